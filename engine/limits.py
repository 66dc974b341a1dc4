"""Every documented limit, in one place (mirrored in docs/limits.md).

These are Convex's published limits, kept so apps move both ways
(DESIGN.md section 9). Change one only with the reason written beside it.
"""

MIB = 1024 * 1024

# Values and documents.
document_bytes_max = 1 * MIB
document_fields_max = 1024
# A stored document has `_id` and `_creationTime` besides its user fields, and
# must still pass the 1,024-field object limit when a function returns it.
document_user_fields_max = document_fields_max - 2
document_depth_max = 16
value_depth_max = 64
array_elements_max = 8192
field_name_chars_max = 1024
value_bytes_max = 16 * MIB  # arguments and return values, each

# Per function call.
read_bytes_max = 16 * MIB
documents_scanned_max = 32_000
index_ranges_max = 4096
write_bytes_max = 16 * MIB
documents_written_max = 16_000
functions_scheduled_max = 1000
query_user_ms_max = 1_000  # queries and mutations: user code time, checked at every await
action_user_ms_max = 600_000  # actions: 10 minutes

# Schema.
indexes_per_table_max = 32
fields_per_index_max = 16
search_indexes_per_table_max = 4
vector_indexes_per_table_max = 4
filter_fields_per_index_max = 16
vector_dimensions_min = 2
vector_dimensions_max = 4096
vector_results_max = 256
search_results_max = 1024

# Function paths (PROTOCOL.md 2.2).
path_component_chars_max = 64
function_name_chars_max = 64

# HTTP: Convex allows a 16 MiB value plus 2,000 bytes of envelope.
http_body_bytes_max = 16 * MIB + 2000

# Pagination: Convex rejects more than 8,192 items on one page.
page_items_max = 8192

# Mutations: optimistic attempts before a mutation takes the serial lane. Three
# covers the common case of one or two concurrent writers to a hot key; past
# that, retrying optimistically only burns CPU the winners need.
optimistic_attempts_max = 3

# Group commit: the most commits one fsync covers. 1,024 keeps a group's write
# batch under a few MiB for small documents while amortising the fsync fully.
group_commits_max = 1024
