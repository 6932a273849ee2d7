"""Serving concerns applied around an unchanged model (diffusers-style hooks): step caches kept to one conditioning,
row parallelism across processes."""
