"""Origins: where originals come from (HTTP servers, local directories, buckets).

Every kind implements ``base.Origin``; ``build.build_origin_set`` makes the
configured master and slaves into one ``chain.OriginSet``.
"""
