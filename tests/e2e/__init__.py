"""The .deb installed with apt and run by a real systemd in a container."""
