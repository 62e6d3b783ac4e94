#!/usr/bin/env python3
"""Writes the hand-made seed inputs of each fuzz target into fuzz/corpus/<target>/seed-*.

The corpus committed next to them also holds inputs the fuzzer found (kept small with
`cargo fuzz cmin`). Run from anywhere: python3 fuzz/make_seeds.py
"""
import json, os, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

# ---- project ----
SYNC = """  - id: {id}
    name: s{id}
    source: {{connection: {src}, {rel}}}
    destination: {{connection: {dest}, object: {obj}}}
    primary_identifier: {{from: email, to: {to}}}
    behavior: {beh}
    mappings:
      - {{from: name, to: full_name, type: string}}
      - {{from: score, to: score, type: integer}}
      - {{constant: true, to: is_live}}
{extra}"""
DESTS = """destinations:
  hook:
    type: webhook
    url: http://127.0.0.1:9/x
    batch_size: 50
    timeout: 5s
    max_concurrency: 2
    rate_limit: {requests: 10, per: 1s}
    headers:
      Authorization: Bearer ${HOOK_TOKEN}
    retry: {max_attempts: 3, initial_backoff: 10ms, max_backoff: 50ms}
  hs:
    type: hubspot
    access_token: ${HS_TOKEN}
  it:
    type: iterable
    api_key: ${IT_KEY}
    merge_nested_objects: true
  sf:
    type: salesforce
    login_url: https://login.salesforce.com
    client_id: ${SF_ID}
    client_secret: ${SF_SECRET}
    refresh_token: ${SF_REFRESH}
    api: bulk
  pg:
    type: postgres
    url: ${DEST_PG_URL}
"""
SOURCES = """sources:
  warehouse:
    url: sqlite://warehouse.db
  pgw:
    url: postgres://user:${PG_PASSWORD}@localhost:5432/db
  my:
    url: mysql://root:${MY_PASSWORD}@localhost/db
    dbt_manifest: target/manifest.json
"""
syncs = [
    SYNC.format(id=1, src="warehouse", rel="table: contacts", dest="hook", obj="contacts", to="email", beh="upsert", extra="    schedule: every:1h\n"),
    SYNC.format(id=2, src="pgw", rel="query: 'SELECT * FROM contacts WHERE score > 1'", dest="hs", obj="contacts", to="email", beh="mirror", extra=""),
    SYNC.format(id=3, src="my", rel="dbt_model: pub_contacts", dest="it", obj="users", to="email", beh="update", extra=""),
    SYNC.format(id=4, src="warehouse", rel="table: events", dest="it", obj="events", to="email", beh="append", extra="    unique_key: event_id\n"),
    SYNC.format(id=5, src="warehouse", rel="table: contacts", dest="sf", obj="Contact", to="External_Id__c", beh="upsert", extra=""),
    SYNC.format(id=6, src="warehouse", rel="table: contacts", dest="pg", obj="public.people", to="email", beh="create", extra="    schedule: 'cron:0 */6 * * *'\n"),
]
full = SOURCES + DESTS + "state: sqlite://state.db\nsyncs:\n" + "".join(syncs)
put("project", "full.yml", full)
put("project", "minimal.yml", SOURCES.split("  pgw")[0] + DESTS.split("  hs:")[0] + "syncs:\n" + syncs[0])
put("project", "errors.yml", full.replace("behavior: mirror", "behavior: mirrorr").replace("type: integer", "type: int").replace("${HS_TOKEN}", "literal-token"))
put("project", "flow.yml", '{sources: {w: {url: "sqlite://w.db"}}, destinations: {h: {type: webhook, url: "http://h/x"}}, syncs: [{id: 1, name: a, source: {connection: w, table: t}, destination: {connection: h}, primary_identifier: {from: e, to: e}, mappings: []}]}')
put("project", "anchors.yml", "x: &a {url: 'sqlite://w.db'}\nsources:\n  w: *a\nsyncs: [\n")

# ---- convert ----
for i, (t, v) in enumerate([
    (0, 12), (1, "42"), (1, 3.0), (1, 1e300), (2, "12.50"), (2, "1e999"), (3, "yes"), (3, 1), (4, "2026-01-31T12:00:00+02:00"),
    (4, "9999-12-31T23:59:59-23:59"), (4, "2026-01-31 12:00:00.123"), (4, "2026-01-31"), (5, {"a": [1, None]}), (0, None),
]):
    put("convert", f"{i:02}", bytes([t]) + json.dumps(v).encode())

# ---- pg_value ----
ALL = ["bool", "int2", "int4", "int8", "oid", "float4", "float8", "numeric", "text", "json", "jsonb", "uuid", "bytea",
       "date", "time", "timetz", "timestamp", "timestamptz"]
T = {n: i for i, n in enumerate(ALL)}
def numeric(ndigits, weight, sign, dscale, digits):
    return struct.pack(">hhHH", ndigits, weight, sign, dscale) + b"".join(struct.pack(">h", d) for d in digits)
values = {
    "bool": b"\x01", "int2": struct.pack(">h", -5), "int4": struct.pack(">i", 7), "int8": struct.pack(">q", -(2**63)),
    "oid": struct.pack(">I", 2**32 - 1), "float4": struct.pack(">f", 1.5), "float8": struct.pack(">d", float("nan")),
    "numeric": numeric(3, 1, 0x4000, 6, [12, 3456, 7800]), "text": "héllo".encode(), "json": b'{"a":[1,2]}',
    "jsonb": b'\x01{"b":null}', "uuid": bytes(range(16)), "bytea": b"\x00\xff", "date": struct.pack(">i", -2**31),
    "time": struct.pack(">q", 86399999999), "timetz": struct.pack(">qi", 3600000000, -7200),
    "timestamp": struct.pack(">q", 0), "timestamptz": struct.pack(">q", 2**62),
}
for n, b in values.items():
    put("pg_value", n, bytes([T[n]]) + b)
def array(elem, dims, items):
    out = struct.pack(">iii", len(dims), 0, 23)
    for d in dims:
        out += struct.pack(">ii", d, 1)
    for it in items:
        out += struct.pack(">i", -1) if it is None else struct.pack(">i", len(it)) + it
    return out
put("pg_value", "int4-array-2d", bytes([0x80 | T["int4"]]) + array("int4", [2, 2], [struct.pack(">i", i) for i in range(3)] + [None]))
put("pg_value", "text-array", bytes([0x80 | T["text"]]) + array("text", [3], [b"a", None, b"ccc"]))

# ---- pg_copy ----
SIG = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">II", 0, 0)
def tuple_(fields):
    out = struct.pack(">h", len(fields))
    for f in fields:
        out += struct.pack(">i", -1) if f is None else struct.pack(">i", len(f)) + f
    return out
cols = ["text", "int8", "numeric", "timestamptz"]
rows = [[b"user1@example.com", struct.pack(">q", 1), numeric(1, 0, 0, 2, [5]), struct.pack(">q", 1000)],
        [None, struct.pack(">q", -1), None, struct.pack(">q", 2**63 - 1)]]
stream = SIG + b"".join(tuple_(r) for r in rows) + struct.pack(">h", -1)
put("pg_copy", "four-columns", bytes([len(cols) - 1]) + bytes(T[c] for c in cols) + bytes([7]) + stream)
put("pg_copy", "one-column-chunk1", bytes([0, T["jsonb"], 1]) + SIG + tuple_([b'\x01{"k": 1}']) + struct.pack(">h", -1))
put("pg_copy", "truncated", bytes([1, T["uuid"], 0x80 | T["int2"], 64]) + SIG + tuple_([bytes(16), array("int2", [1], [b"\x00\x01"])])[:-3])

# ---- destinations ----
def answers(sync, op, n, items):
    out = bytes([sync, op, n])
    names = ["content-type", "retry-after", "x-hubspot-ratelimit-max", "x-hubspot-ratelimit-remaining",
             "x-hubspot-ratelimit-interval-milliseconds", "x-hubspot-ratelimit-daily", "x-hubspot-ratelimit-daily-remaining",
             "sforce-limit-info", "location"]
    for status, headers, body in items:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        out += struct.pack(">HB", status - 100, len(headers))
        for k, v in headers:
            out += bytes([names.index(k), len(v)]) + v.encode()
        out += struct.pack(">H", len(body)) + body
    return out
J = [("content-type", "application/json")]
# SYNCS order: webhook, hs upsert, hs update, hs mirror, it upsert, it mirror, it events, sf upsert, sf update, sf mirror, sf bulk, sf create
put("destinations", "webhook-results", answers(0, 0, 3, [(200, J, {"results": [{"index": 0, "status": "accepted"}, {"index": 2, "status": "rejected", "reason": "bad"}]})]))
put("destinations", "webhook-429", answers(0, 0, 2, [(429, [("retry-after", "2")], {"message": "slow down"})]))
hs_ok = {"status": "COMPLETE", "results": [{"id": "101", "properties": {"email": "user0@example.com"}}], "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:01Z"}
put("destinations", "hubspot-200", answers(1, 0, 1, [(200, J + [("x-hubspot-ratelimit-max", "190"), ("x-hubspot-ratelimit-remaining", "180"), ("x-hubspot-ratelimit-interval-milliseconds", "10000")], hs_ok)]))
put("destinations", "hubspot-207", answers(1, 0, 3, [(207, J, {"status": "COMPLETE", "results": [{"id": "1", "properties": {"email": "user0@example.com"}}],
    "numErrors": 1, "errors": [{"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid", "context": {"ids": ["user1@example.com"]}}]})]))
put("destinations", "hubspot-400-invalid-email", answers(2, 1, 2, [(400, J, {"status": "error", "message": "Invalid input JSON", "category": "VALIDATION_ERROR",
    "errors": [{"message": "Email address user1@example.com is invalid", "context": {"id": ["user1@example.com"]}}]})]))
put("destinations", "hubspot-403-scopes", answers(3, 3, 1, [(403, J, {"status": "error", "category": "MISSING_SCOPES", "message": "missing scopes",
    "errors": [{"context": {"requiredGranularScopes": ["crm.objects.contacts.write"]}}]})]))
put("destinations", "hubspot-mirror-read", answers(3, 3, 2, [(200, J, {"status": "COMPLETE", "results": [{"id": "5", "properties": {"email": "user0@example.com"}}]}), (204, [], "")]))
put("destinations", "iterable-bulk", answers(4, 0, 3, [(200, J, {"successCount": 2, "failCount": 1, "invalidEmails": ["user2@example.com"], "failedUpdates": {"notFoundEmails": []}, "filteredOutFields": ["x"]})]))
put("destinations", "iterable-delete", answers(5, 3, 2, [(200, J, {"msg": "ok", "code": "Success", "params": None}), (400, J, {"msg": "User not found", "code": "BadParams", "params": {"email": "user1@example.com"}})]))
put("destinations", "iterable-events", answers(6, 4, 2, [(200, J, {"successCount": 1, "failCount": 1, "createdFields": [], "failedUpdates": {"invalidEmails": ["user1@example.com"]}, "disallowedEventNames": []})]))
put("destinations", "iterable-429", answers(4, 0, 1, [(429, J, {"msg": "Rate limit exceeded", "code": "RateLimitExceeded", "params": None})]))
put("destinations", "salesforce-collections", answers(7, 0, 3, [(200, J + [("sforce-limit-info", "api-usage=10/15000")],
    [{"id": "003xx1", "success": True, "errors": [], "created": True}, {"success": False, "errors": [{"statusCode": "INVALID_EMAIL_ADDRESS", "message": "bad", "fields": ["Email"]}]}, {"id": "003xx3", "success": True, "errors": []}])]))
put("destinations", "salesforce-token-refused", answers(7, 0, 1, [(400, J, b'!{"error":"invalid_grant","error_description":"expired access/refresh token"}')]))
put("destinations", "salesforce-update-lookup", answers(8, 1, 2, [(200, J, {"totalSize": 1, "done": True, "records": [{"attributes": {"type": "Contact"}, "Id": "003A", "Email": "user0@example.com"}]}),
    (200, J, [{"id": "003A", "success": True, "errors": []}])]))
put("destinations", "salesforce-delete", answers(9, 3, 2, [(200, J, {"totalSize": 2, "done": True, "records": [{"Id": "003A", "External_Id__c": "user0@example.com"}, {"Id": "003B", "External_Id__c": "user1@example.com"}]}),
    (200, J, [{"id": "003A", "success": True, "errors": []}, {"id": "003B", "success": False, "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "gone"}]}])]))
put("destinations", "salesforce-401-then-ok", answers(12 - 1, 2, 1, [(401, J, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]), (201, J, [{"id": "003C", "success": True, "errors": []}])]))
put("destinations", "salesforce-bulk", answers(10, 0, 2, [
    (200, J, {"id": "750J", "state": "Open", "contentUrl": "services/data/v62.0/jobs/ingest/750J/batches"}),
    (201, [], ""),
    (200, J, {"id": "750J", "state": "UploadComplete"}),
    (200, J, {"id": "750J", "state": "JobComplete", "numberRecordsProcessed": 2, "numberRecordsFailed": 1}),
    (200, [("content-type", "text/csv")], '"sf__Id","sf__Created","External_Id__c"\n"003A","true","user0@example.com"\n'),
    (200, [("content-type", "text/csv")], '"sf__Id","sf__Error","External_Id__c"\n"","REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --","user1@example.com"\n'),
]))
put("destinations", "salesforce-unlock-5xx", answers(7, 0, 1, [(500, J, [{"message": "unable to obtain exclusive access", "errorCode": "UNABLE_TO_LOCK_ROW"}])]))

# check() first (high bit of the operation byte), then the batch
put("destinations", "check-webhook-ok", answers(0, 0x80, 1, [(200, J, {}), (200, J, {"results": [{"index": 0, "status": "accepted"}]})]))
put("destinations", "check-hubspot-401", answers(1, 0x80, 1, [(401, J, {"status": "error", "category": "INVALID_AUTHENTICATION", "message": "Authentication credentials not found. fuzz-HS_TOKEN"})]))
put("destinations", "check-hubspot-properties", answers(1, 0x80, 1, [(200, J, {"results": []}),
    (200, J, {"results": [{"name": "email", "hasUniqueValue": True, "modificationMetadata": {"readOnlyValue": False}}, {"name": "firstname", "modificationMetadata": {"readOnlyValue": True}}]})]))
put("destinations", "check-iterable-401", answers(4, 0x80, 1, [(401, J, {"msg": "Invalid API key fuzz-IT_KEY", "code": "BadApiKey", "params": None})]))
put("destinations", "check-salesforce-limits", answers(7, 0x80, 1, [(200, J, {"DailyApiRequests": {"Max": 15000, "Remaining": 14990}}),
    (200, J, {"name": "Contact", "fields": [{"name": "External_Id__c", "externalId": True, "updateable": True}, {"name": "LastName", "updateable": True}]})]))
put("destinations", "check-salesforce-token-refused", answers(10, 0x80, 1, [(400, J, b'!{"error":"invalid_grant","error_description":"expired access/refresh token fuzz-SF_REFRESH"}')]))

# ---- source_values ----
# data[0] < 0x80: MySQL decoder (Int8 s/u, Int16 s/u, Int32 s/u, Int64 s/u, Bool, Float, Double,
# Decimal, Text, Json, Bytes, Bit, Date, DateTime, Time); >= 0x80: SQLite declared type
# (0x80 bool, 0x81 timestamp, 0x82 JSON, 0x83 other) and the text.
MY = ["i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "bool", "float", "double", "decimal", "text", "json", "bytes", "bit", "date", "datetime", "time"]
def my(kind, b):
    return bytes([MY.index(kind)]) + b
for name, data in [
    ("mysql-i8", my("i8", b"\xff")),
    ("mysql-u64-max", my("u64", struct.pack("<Q", 2**64 - 1))),
    ("mysql-i64-min", my("i64", struct.pack("<q", -2**63))),
    ("mysql-float", my("float", struct.pack("<f", 1.5))),
    ("mysql-double-nan", my("double", struct.pack("<d", float("nan")))),
    ("mysql-decimal", my("decimal", b"-12345678901234567890.123456789")),
    ("mysql-json", my("json", b'{"a": [1, 2.50, null]}')),
    ("mysql-bit", my("bit", b"\x01\x02\x03")),
    ("mysql-date", my("date", bytes([4, 0xea, 0x07, 1, 31]))),
    ("mysql-datetime-micros", my("datetime", bytes([11, 0xea, 0x07, 1, 31, 12, 0, 0, 0x20, 0xa1, 0x07, 0]))),
    ("mysql-datetime-max", my("datetime", bytes([11, 0xff, 0xff, 255, 255, 255, 255, 255, 0xff, 0xff, 0xff, 0xff]))),
    ("mysql-time-negative", my("time", bytes([12, 1, 0xff, 0xff, 0xff, 0xff, 23, 59, 59, 0x3f, 0x42, 0x0f, 0]))),
    ("mysql-time-zero", my("time", bytes([0]))),
    ("sqlite-bool", b"\x80" + b"1"),
    ("sqlite-timestamp", b"\x81" + b"2026-01-31 12:00:00"),
    ("sqlite-timestamp-offset", b"\x81" + b"2026-01-31T14:30:00.250+02:00"),
    ("sqlite-timestamp-z", b"\x81" + b" 9999-12-31 23:59:59.999999999Z "),
    ("sqlite-timestamp-negative-year", b"\x81" + b"-9999-01-01 00:00-23:59"),
    ("sqlite-json", b"\x82" + b'{"k": [1, {"n": 1e400}]}'),
    ("sqlite-json-scalar", b"\x82" + b'"just a string"'),
    ("sqlite-text", b"\x83" + "h\u00e9llo".encode()),
]:
    put("source_values", name, data)

# ---- api ----
M = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
def req(method, auth, target, body=b""):
    return bytes([M.index(method), auth]) + target.encode() + (b"\x00" + (body.encode() if isinstance(body, str) else body) if body else b"")
for i, (m, a, t, b) in enumerate([
    ("GET", 0, "/api/v1/syncs?page=1&per_page=2&order=asc", ""),
    ("GET", 0, "/api/v1/syncs/contacts", ""),
    ("POST", 0, "/api/v1/syncs/1/trigger?force_full_sync=true", '{"force_full_sync": false}'),
    ("GET", 0, "/api/v1/syncs/1/sync_runs?order=desc", ""),
    ("GET", 0, "/api/v1/sync_runs/1", ""),
    ("GET", 0, "/api/v1/sync_runs/1/records?status=invalid&primary_identifier=user1%40example.com", ""),
    ("GET", 0, "/api/v1/sync_runs/1/records_count?operation=upsert", ""),
    ("POST", 0, "/api/v1/sync_runs/2/cancel", ""),
    ("GET", 3, "/runs/1?limit=5", ""),
    ("GET", 1, "/?limit=10", ""),
    ("GET", 2, "/api/v1/syncs", ""),
    ("GET", 4, "/api/v1/syncs", "Basic YmVhcmVyOnNlY3JldC10b2tlbjpmdXp6LTAxMjM0NTY3ODlhYmNkZWY="),
    ("GET", 1, "/metrics", ""),
    ("GET", 1, "/healthz", ""),
    ("DELETE", 0, "/api/v1/syncs/1", ""),
    ("GET", 0, "/api/v1/nope", ""),
]):
    put("api", f"{i:02}", req(m, a, t, b))
print("seeds written under", ROOT)
