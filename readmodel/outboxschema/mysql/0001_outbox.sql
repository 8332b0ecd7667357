-- jetfleet's after-commit outbox (readmodel.Outbox): one row per job
-- dispatched inside a transaction, written by that transaction and deleted
-- once JetStream has stored the job. job_id is the job's ID and its
-- Nats-Msg-Id, so a row published twice is stored once.
CREATE TABLE IF NOT EXISTS jetfleet_outbox (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  job_id VARCHAR(256) NOT NULL,
  subject VARCHAR(255) NOT NULL,
  headers TEXT NOT NULL,
  body LONGBLOB NOT NULL,
  created_ms BIGINT NOT NULL
) ENGINE=InnoDB;
