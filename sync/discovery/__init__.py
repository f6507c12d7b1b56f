"""Discovery: the scanner daemon, its drivers, and how found hardware enters the inventory."""
