"""Run ComfyUI workflows from the command line: one API-format workflow on one server, or a jobs file spread over
several servers (`python -m mtv_core queue`).

An application beside the mtv_core library, not part of it: it talks HTTP through `requests` and follows progress
through `websocket-client` (the `queue` extra). No server is trusted: every answer is checked and bounded in time
and size, downloads are streamed to disk under a limit, and a file name a server gives can neither leave the output
folder nor replace a file.

This module imports nothing, so that listing the command's options needs neither package.
"""
