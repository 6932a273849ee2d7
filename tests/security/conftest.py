"""Hostile inputs: files, servers and names made to break the pack. Each must be refused in one line that names
the problem, without running code, filling memory, or touching a file outside its folder."""
