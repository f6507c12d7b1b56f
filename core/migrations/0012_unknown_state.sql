-- OpenCHAMI's `Unknown` component state (a component SMD knows of but whose
-- state no one has seen yet), so that what an OpenCHAMI client stores reads
-- back the same through both faces.
ALTER TABLE smd.components DROP CONSTRAINT components_state_check;
ALTER TABLE smd.components ADD CONSTRAINT components_state_check
    CHECK (state IN ('Unknown', 'Empty', 'Populated', 'Off', 'On', 'Standby', 'Halt', 'Ready'));
