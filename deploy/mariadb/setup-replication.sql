-- Run once on each REPLICA as an administrator, after setup-primary.sql ran
-- on the primary, filling in the placeholders with envsubst, for example:
--   PRIMARY_HOST=10.0.0.10 PRIMARY_PORT=3306 REPL_USER=repl REPL_PASSWORD=... \
--   envsubst < setup-replication.sql | mariadb
-- A new replica starts from an empty GTID position and replays the primary's
-- binary log from its start; to seed one from a backup instead, set
-- gtid_slave_pos to the backup's position before running this.

STOP SLAVE;

CHANGE MASTER TO
  MASTER_HOST = '${PRIMARY_HOST}',
  MASTER_PORT = ${PRIMARY_PORT},
  MASTER_USER = '${REPL_USER}',
  MASTER_PASSWORD = '${REPL_PASSWORD}',
  MASTER_CONNECT_RETRY = 5,
  MASTER_USE_GTID = slave_pos;

START SLAVE;
