"""Session fixtures that train tiny models once for every test that needs one (owned by build/train)."""
