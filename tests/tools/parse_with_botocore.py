#!/usr/bin/env python3
"""Parses responses the way botocore does, for the fuzz test (tests/tests/api/fuzz.rs).

Reads JSON lines {"operation", "status", "body"} on stdin and parses each body with botocore's
QueryParser against the operation's output shape (or as an error document when the status is
not 200). Prints one JSON object: how many were parsed, how many operations botocore does not
know, and every failure. Exits 1 if anything failed.
"""
import json
import sys

import botocore.session
from botocore.parsers import QueryParser

model = botocore.session.get_session().get_service_model("elasticache")
known = set(model.operation_names)
parser = QueryParser()
parsed, unknown, failures = 0, 0, []
for line in sys.stdin:
    answer = json.loads(line)
    operation, status, body = answer["operation"], answer["status"], answer["body"]
    if operation not in known:
        unknown += 1
        continue
    response = {"body": body.encode("utf-8"), "status_code": status, "headers": {}}
    try:
        result = parser.parse(response, model.operation_model(operation).output_shape)
        if status != 200 and not result.get("Error", {}).get("Code"):
            raise ValueError("an error answer without an error code")
        parsed += 1
    except Exception as error:  # every failure is reported, whatever raised it
        failures.append({"operation": operation, "status": status, "error": repr(error), "body": body[:500]})
print(json.dumps({"parsed": parsed, "unknown_operations": unknown, "failures": failures[:20]}))
sys.exit(1 if failures else 0)
