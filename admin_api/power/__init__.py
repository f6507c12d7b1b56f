"""Power control: transitions, status, action shortcuts."""
