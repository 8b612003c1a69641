-- Users and user groups (RBAC). Each document is owned by crates/store/src/users.rs; who
-- belongs to which group is a table of its own, so that deleting a user removes it from
-- every group (as AWS does) and a user's groups are one join away.

CREATE TABLE users (
    region  TEXT NOT NULL,
    account TEXT NOT NULL,
    id      TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (region, account, id)
);

CREATE TABLE user_groups (
    region  TEXT NOT NULL,
    account TEXT NOT NULL,
    id      TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (region, account, id)
);

-- `position` keeps the order users were added in.
CREATE TABLE user_group_members (
    region   TEXT NOT NULL,
    account  TEXT NOT NULL,
    group_id TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (region, account, group_id, user_id),
    FOREIGN KEY (region, account, group_id)
        REFERENCES user_groups (region, account, id) ON DELETE CASCADE,
    FOREIGN KEY (region, account, user_id)
        REFERENCES users (region, account, id) ON DELETE CASCADE
);
CREATE INDEX user_group_members_by_user ON user_group_members (region, account, user_id);
