-- Service updates published through the admin API, and the update actions applied or
-- stopped through BatchApplyUpdateAction / BatchStopUpdateAction. Each document is owned
-- by crates/store/src/service_updates.rs. An update action never applied has no row: it is
-- `not-applied`. `name` is the ServiceUpdateName, or for an action
-- `<ServiceUpdateName>|<replication-group|cache-cluster>|<id>`.

CREATE TABLE service_updates (
    region  TEXT NOT NULL,
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (region, account, name)
);

CREATE TABLE update_actions (
    region  TEXT NOT NULL,
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (region, account, name)
);
