"""What several stages share and none owns: typed YAML reading with line numbers
(yamlnodes), batched SQLite writes (sqlite), configured file paths (files), the stop
half of background tasks (tasks), and the SIGHUP note taken before imports (early_signals).

Postfix counterpart: src/global and src/util.
"""
