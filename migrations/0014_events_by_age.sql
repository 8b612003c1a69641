-- Events older than DescribeEvents can show (14 days) are deleted: found by their age alone,
-- whatever their scope, without reading every event.
CREATE INDEX events_by_age ON events (date_millis);
