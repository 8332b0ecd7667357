-- Run by the mariadb image on first start (docker-entrypoint-initdb.d), on
-- the primary and on the replica, after it created MARIADB_USER: what
-- deploy/mariadb/setup-primary.sql grants beyond the image's defaults.
-- Not binary-logged, so the replica's GTID position stays the primary's.
SET SESSION sql_log_bin = 0;
GRANT SLAVE MONITOR ON *.* TO 'jetfleet'@'%';
