-- In the manifest, never built by the test (it selects only the seed and pub_hubspot_contacts).
select 1 as id, 'unbuilt@example.com' as email
