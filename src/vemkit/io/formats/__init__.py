"""Format modules; importing this package registers every built-in reader."""
