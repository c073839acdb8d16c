//! mailchimp (being written)
