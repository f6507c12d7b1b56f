-- A profile's iPXE script (template): the whole script its nodes run instead of the boot path's own
-- kernel/initrd/boot lines (core/templates.py check_script; rendered per node when the answers are built).
-- NULL: the boot path's script.  The change feed's triggers on bss.profiles already cover the new column.
ALTER TABLE bss.profiles ADD COLUMN script text CHECK (script IS NULL OR length(script) <= 16384);
