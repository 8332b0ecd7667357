-- The reference app (a catalog of items with images), MySQL/MariaDB.
-- Every statement can run again (IF NOT EXISTS): MySQL commits DDL as it
-- goes, so a migration interrupted halfway must be safe to re-run.

CREATE TABLE IF NOT EXISTS users (
  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name       VARCHAR(191) NOT NULL,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY users_name_unique (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS items (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id     BIGINT UNSIGNED NOT NULL,
  name        VARCHAR(255) NOT NULL,
  description TEXT NOT NULL,
  created_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  KEY items_user_id_index (user_id),
  CONSTRAINT items_user_id_foreign FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One row per stored rendition of an item's image: size 0 is the original,
-- other sizes are the bounding box of a resized copy (160, 640, ...).
-- object_name is the key of the bytes in the object store.
CREATE TABLE IF NOT EXISTS item_images (
  id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  item_id      BIGINT UNSIGNED NOT NULL,
  name         VARCHAR(191) NOT NULL,
  size         INT UNSIGNED NOT NULL DEFAULT 0,
  object_name  VARCHAR(512) NOT NULL,
  width        INT UNSIGNED NOT NULL DEFAULT 0,
  height       INT UNSIGNED NOT NULL DEFAULT 0,
  content_type VARCHAR(100) NOT NULL DEFAULT '',
  created_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY item_images_item_name_size_unique (item_id, name, size),
  CONSTRAINT item_images_item_id_foreign FOREIGN KEY (item_id) REFERENCES items (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Messages (mail, notifications) written by jobs, for the app to show or a
-- sender to deliver.
CREATE TABLE IF NOT EXISTS outbox (
  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  kind       VARCHAR(64) NOT NULL,
  recipient  VARCHAR(255) NOT NULL,
  body       TEXT NOT NULL,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  KEY outbox_recipient_index (recipient),
  KEY outbox_created_at_index (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
