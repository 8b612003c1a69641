-- Resources that need no cache nodes. Every resource is scoped by region and account;
-- names are stored lowercase, as AWS stores them.

CREATE TABLE cache_parameter_groups (
    region      TEXT NOT NULL,
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    family      TEXT NOT NULL,
    description TEXT NOT NULL,
    is_default  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (region, account, name)
);

-- Only values a user set; everything else is the family's default.
CREATE TABLE cache_parameter_values (
    region     TEXT NOT NULL,
    account    TEXT NOT NULL,
    group_name TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (region, account, group_name, name),
    FOREIGN KEY (region, account, group_name)
        REFERENCES cache_parameter_groups (region, account, name) ON DELETE CASCADE
);

CREATE TABLE cache_subnet_groups (
    region      TEXT NOT NULL,
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    vpc_id      TEXT NOT NULL,
    PRIMARY KEY (region, account, name)
);

CREATE TABLE cache_subnets (
    region            TEXT NOT NULL,
    account           TEXT NOT NULL,
    group_name        TEXT NOT NULL,
    subnet_id         TEXT NOT NULL,
    availability_zone TEXT NOT NULL,
    position          INTEGER NOT NULL,
    PRIMARY KEY (region, account, group_name, subnet_id),
    FOREIGN KEY (region, account, group_name)
        REFERENCES cache_subnet_groups (region, account, name) ON DELETE CASCADE
);

CREATE TABLE cache_security_groups (
    region      TEXT NOT NULL,
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (region, account, name)
);

CREATE TABLE cache_security_group_ingress (
    region         TEXT NOT NULL,
    account        TEXT NOT NULL,
    group_name     TEXT NOT NULL,
    ec2_group_name TEXT NOT NULL,
    ec2_owner_id   TEXT NOT NULL,
    PRIMARY KEY (region, account, group_name, ec2_group_name, ec2_owner_id),
    FOREIGN KEY (region, account, group_name)
        REFERENCES cache_security_groups (region, account, name) ON DELETE CASCADE
);

-- Tags by resource ARN; `id` keeps the order they were added in.
CREATE TABLE tags (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    arn   TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (arn, key)
);
