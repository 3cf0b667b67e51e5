"""Origins: where originals come from (HTTP servers, local directories)."""
