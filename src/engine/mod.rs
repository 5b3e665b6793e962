//! Plan and run. OWNER: lead.
