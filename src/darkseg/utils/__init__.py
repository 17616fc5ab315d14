"""Small shared helpers: atomic file output, image reading, seeding, device selection."""
