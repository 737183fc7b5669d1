"""L1 infrastructure: settings, logging, masking, metrics, caches, rate limits, the AI
quota, data sources and Redis key names. Imports only ``quant`` and other L1 modules."""
