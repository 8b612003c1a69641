"""The example application of docker/compose.yaml: finds the replication group the init
script created through the ElastiCache API, then writes and reads a key through the primary
endpoint, which names the emulator's advertised host. Standard library only.

    python3 app.py http://elasticache:4566
"""

import socket
import sys
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

NS = "{http://elasticache.amazonaws.com/doc/2015-02-02/}"
GROUP = "app-cache"


def describe_group(api):
    query = urllib.parse.urlencode(
        {"Action": "DescribeReplicationGroups", "Version": "2015-02-02", "ReplicationGroupId": GROUP}
    )
    with urllib.request.urlopen(f"{api}/?{query}", timeout=5) as response:
        return ET.fromstring(response.read()).find(f".//{NS}ReplicationGroup")


def primary_endpoint(api, timeout=60):
    """The group's primary endpoint once it is available (the init script may still run)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            group = describe_group(api)
            if group is not None and group.findtext(f"{NS}Status") == "available":
                endpoint = group.find(f".//{NS}PrimaryEndpoint")
                return endpoint.findtext(f"{NS}Address"), int(endpoint.findtext(f"{NS}Port"))
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"{GROUP} is not available after {timeout} s")
        time.sleep(0.2)


def command(connection, replies, *args):
    """One RESP command and its reply: a status line, or a bulk string's value."""
    request = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    connection.sendall(request.encode())
    reply = replies.readline().decode().rstrip("\r\n")
    if reply.startswith("$") and reply != "$-1":
        return replies.readline().decode().rstrip("\r\n")
    return reply


def main():
    api = sys.argv[1] if len(sys.argv) > 1 else "http://elasticache:4566"
    host, port = primary_endpoint(api)
    with socket.create_connection((host, port), timeout=5) as connection:
        replies = connection.makefile("rb")
        assert command(connection, replies, "SET", "greeting", "hello from the app") == "+OK"
        value = command(connection, replies, "GET", "greeting")
    print(f"{GROUP} primary endpoint {host}:{port}: GET greeting -> {value}")
    assert value == "hello from the app", value


if __name__ == "__main__":
    main()
