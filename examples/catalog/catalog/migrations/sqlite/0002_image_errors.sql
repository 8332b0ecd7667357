-- Why an uploaded image could not be processed (not an image, too large),
-- so the app can show it instead of waiting forever; '' when it could.
ALTER TABLE item_images ADD COLUMN error TEXT NOT NULL DEFAULT '';
