-- Each upload of an image is a version of its own: the rows and objects of
-- one upload carry its version, so a later upload of the same name never
-- mixes with an earlier one still being processed. Rows from before get
-- '' (their objects keep the layout items/<item>/<name>/<size>).
-- One statement: it applies entirely or not at all, so re-running is safe.
ALTER TABLE item_images ADD COLUMN version VARCHAR(32) NOT NULL DEFAULT '';
