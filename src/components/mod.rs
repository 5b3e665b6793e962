//! Component specs. OWNER: lead.
