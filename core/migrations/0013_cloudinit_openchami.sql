-- What OpenCHAMI's cloud-init groups carry besides the data a node receives, so that
-- ochami reads back what it stored (admin_api/openchami/cloudinit.py): the group's
-- description, and the name and encoding of its file.  The file's content itself is
-- the payload's user_data, decoded; `base64` says to encode it again when it is read
-- back.  Kept out of meta_data, which reaches the node as it is.
ALTER TABLE cloudinit.payloads
    ADD COLUMN description   text NOT NULL DEFAULT '' CHECK (length(description) <= 4096),
    ADD COLUMN file_name     text NOT NULL DEFAULT '' CHECK (length(file_name) <= 255),
    ADD COLUMN file_encoding text NOT NULL DEFAULT 'plain' CHECK (file_encoding IN ('plain', 'base64'));
