-- jetfleet's after-commit outbox (readmodel.Outbox): one row per job
-- dispatched inside a transaction, written by that transaction and deleted
-- once JetStream has stored the job. job_id is the job's ID and its
-- Nats-Msg-Id, so a row published twice is stored once.
CREATE TABLE IF NOT EXISTS jetfleet_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  subject TEXT NOT NULL,
  headers TEXT NOT NULL,
  body BLOB NOT NULL,
  created_ms INTEGER NOT NULL
);
