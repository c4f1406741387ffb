"""Backends, one small module each; heavy libraries are imported when a backend is first used."""
