-- The reference app (a catalog of items with images), SQLite.
-- readmodel.Migrate runs this in one transaction.

CREATE TABLE users (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL UNIQUE,
  created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE items (
  id          INTEGER PRIMARY KEY,
  user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name        TEXT NOT NULL,
  description TEXT NOT NULL,
  created_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX items_user_id_index ON items (user_id);

-- One row per stored rendition of an item's image: size 0 is the original,
-- other sizes are the bounding box of a resized copy (160, 640, ...).
-- object_name is the key of the bytes in the object store.
CREATE TABLE item_images (
  id           INTEGER PRIMARY KEY,
  item_id      INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
  name         TEXT NOT NULL,
  size         INTEGER NOT NULL DEFAULT 0,
  object_name  TEXT NOT NULL,
  width        INTEGER NOT NULL DEFAULT 0,
  height       INTEGER NOT NULL DEFAULT 0,
  content_type TEXT NOT NULL DEFAULT '',
  created_at   DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (item_id, name, size)
);

-- Messages (mail, notifications) written by jobs, for the app to show or a
-- sender to deliver.
CREATE TABLE outbox (
  id         INTEGER PRIMARY KEY,
  kind       TEXT NOT NULL,
  recipient  TEXT NOT NULL,
  body       TEXT NOT NULL,
  created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX outbox_recipient_index ON outbox (recipient);
CREATE INDEX outbox_created_at_index ON outbox (created_at);
