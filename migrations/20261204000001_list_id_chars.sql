-- Mailchimp list ids may also hold '-' and '_'. CONTRACTS.md gives list ids no format, and the
-- first CHECK allowed letters and digits only, which refused (and the worker then failed for
-- good) any id a Mailchimp other than ours hands out with those characters. Both stay safe in a
-- URL path segment with no escaping; '.', '/' and '%' are still refused, so an id can never
-- name another path.
ALTER TABLE importer.lists DROP CONSTRAINT lists_mailchimp_list_id_check;
ALTER TABLE importer.lists ADD CONSTRAINT lists_mailchimp_list_id_check
    CHECK (mailchimp_list_id ~ '^[A-Za-z0-9_-]{1,64}$');
COMMENT ON CONSTRAINT lists_mailchimp_list_id_check ON importer.lists IS
    'A Mailchimp list id: 1 to 64 letters, digits, - or _ (safe in a URL path segment unescaped); importer_core::mailchimp::is_list_id is the same rule';
