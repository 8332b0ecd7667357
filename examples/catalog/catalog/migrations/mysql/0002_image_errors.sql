-- Why an uploaded image could not be processed (not an image, too large),
-- so the app can show it instead of waiting forever; '' when it could.
-- One statement: it applies entirely or not at all, so re-running is safe.
ALTER TABLE item_images ADD COLUMN error VARCHAR(1000) NOT NULL DEFAULT '';
