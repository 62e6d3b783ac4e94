-- Contacts as HubSpot should see them: one row per e-mail address.
select
    lower(email) as email,
    first_name,
    lead_score,
    signed_up_at
from {{ ref('raw_contacts') }}
where email is not null
