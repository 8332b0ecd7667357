-- Run once on the PRIMARY as an administrator, after filling in the
-- placeholders with envsubst, for example:
--   APP_DATABASE=jetfleet APP_USER=jetfleet APP_PASSWORD=... APP_HOST=% \
--   REPL_USER=repl REPL_PASSWORD=... REPL_HOST=% \
--   envsubst < setup-primary.sql | mariadb
-- Everything here is replicated, so run it before setup-replication.sql
-- and the replicas get the same database and users.

CREATE DATABASE IF NOT EXISTS `${APP_DATABASE}`
  CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

-- The replication account the replicas connect with.
CREATE USER IF NOT EXISTS '${REPL_USER}'@'${REPL_HOST}' IDENTIFIED BY '${REPL_PASSWORD}';
GRANT REPLICATION SLAVE ON *.* TO '${REPL_USER}'@'${REPL_HOST}';

-- The application account (DB_USERNAME / DB_PASSWORD). SLAVE MONITOR lets
-- jetfleet's health checker run SHOW SLAVE STATUS on the replicas; no
-- READ ONLY ADMIN, so it can never write to a read-only replica.
CREATE USER IF NOT EXISTS '${APP_USER}'@'${APP_HOST}' IDENTIFIED BY '${APP_PASSWORD}';
GRANT ALL PRIVILEGES ON `${APP_DATABASE}`.* TO '${APP_USER}'@'${APP_HOST}';
GRANT SLAVE MONITOR ON *.* TO '${APP_USER}'@'${APP_HOST}';
