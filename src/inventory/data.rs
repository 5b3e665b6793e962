//! The in-memory inventory while sources are parsed: a faithful port of Ansible's
//! `inventory/data.py` (`InventoryData`), `inventory/group.py` (`Group`: children, parents,
//! depth, priority) and `inventory/host.py` (`Host`: its groups and ancestors), so group order,
//! `all`/`ungrouped` membership and precedence come out as in Ansible.

use std::collections::HashMap;
use std::path::PathBuf;

use super::hostpattern::MAX_HOSTS;
use super::value::Data;

#[derive(Debug, Clone)]
pub(crate) struct GroupData {
    pub name: String,
    /// Direct hosts, in insertion order (indices into `InvData::hosts`).
    pub hosts: Vec<usize>,
    /// Child groups, in insertion order.
    pub children: Vec<usize>,
    pub parents: Vec<usize>,
    pub vars: Vec<(String, Data)>,
    /// The inventory file each of `vars` was last set from.
    pub origins: HashMap<String, PathBuf>,
    pub depth: i64,
    pub priority: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct HostData {
    pub name: String,
    pub vars: Vec<(String, Data)>,
    /// The inventory file each of `vars` was last set from.
    pub origins: HashMap<String, PathBuf>,
    /// Every group the host belongs to, ancestors included (Ansible's `host.groups`).
    pub groups: Vec<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct InvData {
    pub groups: Vec<GroupData>,
    pub hosts: Vec<HostData>,
    group_idx: HashMap<String, usize>,
    host_idx: HashMap<String, usize>,
    /// Hosts put in groups so far (a host in two groups counts twice): bounded by
    /// [`MAX_HOST_ENTRIES`].
    entries: usize,
    /// The file being parsed, recorded as the origin of the variables it sets.
    pub current_file: PathBuf,
}

pub(crate) const ALL: usize = 0;
pub(crate) const UNGROUPED: usize = 1;
/// Most hosts put in groups in one inventory (each time a host is listed counts): with at most
/// [`MAX_HOSTS`] hosts, a bound on the work of a few lines of host ranges listed again and again.
pub(crate) const MAX_HOST_ENTRIES: usize = 10 * MAX_HOSTS;

pub(crate) fn set_var(vars: &mut Vec<(String, Data)>, key: &str, value: Data) {
    if let Some(slot) = vars.iter_mut().find(|(k, _)| k == key) {
        slot.1 = value;
    } else {
        vars.push((key.to_string(), value));
    }
}

impl InvData {
    pub(crate) fn new() -> Self {
        let mut d = InvData {
            groups: Vec::new(),
            hosts: Vec::new(),
            group_idx: Default::default(),
            host_idx: Default::default(),
            entries: 0,
            current_file: PathBuf::new(),
        };
        d.add_group("all");
        d.add_group("ungrouped");
        d.add_child_group(ALL, UNGROUPED).expect("all -> ungrouped");
        d
    }

    pub(crate) fn group(&self, name: &str) -> Option<usize> {
        self.group_idx.get(name).copied()
    }

    pub(crate) fn host(&self, name: &str) -> Option<usize> {
        self.host_idx.get(name).copied()
    }

    pub(crate) fn add_group(&mut self, name: &str) -> usize {
        if let Some(i) = self.group(name) {
            return i;
        }
        let i = self.groups.len();
        self.groups.push(GroupData {
            name: name.to_string(),
            hosts: Vec::new(),
            children: Vec::new(),
            parents: Vec::new(),
            vars: Vec::new(),
            origins: HashMap::new(),
            depth: 0,
            priority: 1,
        });
        self.group_idx.insert(name.to_string(), i);
        i
    }

    /// `InventoryData.add_host`: creates the host the first time (then a `host:port` port becomes
    /// its `ansible_port`; later ports for the same host are ignored, as in Ansible) and adds it
    /// to `group`.
    pub(crate) fn add_host(
        &mut self,
        name: &str,
        group: Option<usize>,
        port: Option<u64>,
    ) -> Result<usize, String> {
        if name.is_empty() {
            return Err("Invalid empty host name provided".into());
        }
        self.entries += 1;
        if self.entries > MAX_HOST_ENTRIES {
            return Err(format!(
                "hosts are listed more than {MAX_HOST_ENTRIES} times (lsbackup's limit)"
            ));
        }
        let h = match self.host(name) {
            Some(h) => h,
            None => {
                if self.hosts.len() >= MAX_HOSTS {
                    return Err(format!("more than {MAX_HOSTS} hosts (lsbackup's limit)"));
                }
                let h = self.hosts.len();
                let mut vars = Vec::new();
                let mut origins = HashMap::new();
                if let Some(p) = port.filter(|p| *p != 0) {
                    vars.push(("ansible_port".to_string(), Data::Int(p as i128)));
                    origins.insert("ansible_port".to_string(), self.current_file.clone());
                }
                self.hosts.push(HostData {
                    name: name.to_string(),
                    vars,
                    origins,
                    groups: Vec::new(),
                });
                self.host_idx.insert(name.to_string(), h);
                h
            }
        };
        if let Some(g) = group {
            self.group_add_host(g, h);
        }
        Ok(h)
    }

    fn ancestors(&self, g: usize) -> Vec<usize> {
        self.walk(g, |gd| &gd.parents)
    }

    pub(crate) fn descendants_ordered(&self, g: usize) -> Vec<usize> {
        // Group._walk_relationship('child_groups', include_self=True, preserve_ordering=True).
        // Python iterates sets here, so beyond direct children its order is not defined; we use
        // discovery order.
        let mut ordered = vec![g];
        ordered.extend(self.groups[g].children.iter().copied());
        let mut seen: Vec<usize> = Vec::new();
        let mut unprocessed: Vec<usize> = self.groups[g].children.clone();
        unprocessed.push(g);
        while !unprocessed.is_empty() {
            for u in &unprocessed {
                if !seen.contains(u) {
                    seen.push(*u);
                }
            }
            let mut next: Vec<usize> = Vec::new();
            for u in &unprocessed {
                for c in &self.groups[*u].children {
                    if !next.contains(c) {
                        next.push(*c);
                    }
                    if !seen.contains(c) && !ordered.contains(c) {
                        ordered.push(*c);
                    }
                }
            }
            next.retain(|n| !seen.contains(n));
            unprocessed = next;
        }
        ordered
    }

    fn walk(&self, g: usize, rel: impl Fn(&GroupData) -> &Vec<usize>) -> Vec<usize> {
        let mut seen: Vec<usize> = Vec::new();
        let mut unprocessed: Vec<usize> = rel(&self.groups[g]).clone();
        while !unprocessed.is_empty() {
            for u in &unprocessed {
                if !seen.contains(u) {
                    seen.push(*u);
                }
            }
            let mut next = Vec::new();
            for u in &unprocessed {
                for n in rel(&self.groups[*u]) {
                    if !seen.contains(n) && !next.contains(n) {
                        next.push(*n);
                    }
                }
            }
            unprocessed = next;
        }
        seen
    }

    fn group_add_host(&mut self, g: usize, h: usize) -> bool {
        if self.groups[g].hosts.contains(&h) {
            return false;
        }
        self.groups[g].hosts.push(h);
        // Host.add_group: ancestors first, then the group.
        for a in self.ancestors(g) {
            if !self.hosts[h].groups.contains(&a) {
                self.hosts[h].groups.push(a);
            }
        }
        if !self.hosts[h].groups.contains(&g) {
            self.hosts[h].groups.push(g);
        }
        true
    }

    fn group_remove_host(&mut self, g: usize, h: usize) {
        if let Some(pos) = self.groups[g].hosts.iter().position(|x| *x == h) {
            self.groups[g].hosts.remove(pos);
            self.host_remove_group(h, g);
        }
    }

    fn host_remove_group(&mut self, h: usize, g: usize) {
        if let Some(pos) = self.hosts[h].groups.iter().position(|x| *x == g) {
            self.hosts[h].groups.remove(pos);
            // Remove exclusive ancestors, except all.
            for old in self.ancestors(g) {
                if old == ALL {
                    continue;
                }
                let still = self.hosts[h]
                    .groups
                    .clone()
                    .into_iter()
                    .any(|cg| self.ancestors(cg).contains(&old));
                if !still {
                    self.host_remove_group(h, old);
                }
            }
        }
    }

    /// `Group.add_child_group`.
    pub(crate) fn add_child_group(&mut self, parent: usize, child: usize) -> Result<bool, String> {
        if parent == child {
            return Err(format!(
                "can't add group '{}' to itself",
                self.groups[parent].name
            ));
        }
        if self.groups[parent].children.contains(&child) {
            return Ok(false);
        }
        let start_ancestors = self.ancestors(child);
        let mut new_ancestors = self.ancestors(parent);
        if new_ancestors.contains(&child) {
            return Err(format!(
                "Adding group '{}' as child to '{}' creates a recursive dependency loop.",
                self.groups[child].name, self.groups[parent].name
            ));
        }
        new_ancestors.push(parent);
        new_ancestors.retain(|a| !start_ancestors.contains(a));
        self.groups[parent].children.push(child);
        let d = (self.groups[parent].depth + 1).max(self.groups[child].depth);
        self.groups[child].depth = d;
        self.check_children_depth(child)?;
        let pname = self.groups[parent].name.clone();
        if !self.groups[child]
            .parents
            .iter()
            .any(|p| self.groups[*p].name == pname)
        {
            self.groups[child].parents.push(parent);
            for h in self.group_hosts(child) {
                for a in &new_ancestors {
                    if !self.hosts[h].groups.contains(a) {
                        self.hosts[h].groups.push(*a);
                    }
                }
            }
        }
        Ok(true)
    }

    fn check_children_depth(&mut self, g: usize) -> Result<(), String> {
        let mut depth = self.groups[g].depth;
        let start = depth;
        let mut seen: Vec<usize> = Vec::new();
        let mut unprocessed: Vec<usize> = self.groups[g].children.clone();
        while !unprocessed.is_empty() {
            for u in &unprocessed {
                if !seen.contains(u) {
                    seen.push(*u);
                }
            }
            depth += 1;
            let mut next = Vec::new();
            for u in unprocessed {
                if self.groups[u].depth < depth {
                    self.groups[u].depth = depth;
                    for c in self.groups[u].children.clone() {
                        if !next.contains(&c) {
                            next.push(c);
                        }
                    }
                }
            }
            unprocessed = next;
            if (depth - start) as usize > seen.len() {
                return Err(format!(
                    "The group named '{}' has a recursive dependency loop.",
                    self.groups[g].name
                ));
            }
        }
        Ok(())
    }

    /// `InventoryData.add_child`: a group or a host.
    pub(crate) fn add_child(&mut self, parent: usize, child: &str) -> Result<bool, String> {
        if let Some(c) = self.group(child) {
            self.add_child_group(parent, c)
        } else if let Some(h) = self.host(child) {
            Ok(self.group_add_host(parent, h))
        } else {
            Err(format!("{child} is not a known host nor group"))
        }
    }

    /// `Group.get_hosts`: own and descendants' hosts, de-duplicated.
    pub(crate) fn group_hosts(&self, g: usize) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for kid in self.descendants_ordered(g) {
            for h in &self.groups[kid].hosts {
                if !out.contains(h) {
                    out.push(*h);
                }
            }
        }
        out
    }

    /// `Group.set_variable`: `ansible_group_priority` sets the priority instead of a variable.
    pub(crate) fn set_group_var(&mut self, g: usize, key: &str, value: Data) -> Result<(), String> {
        if key == "ansible_group_priority" {
            self.groups[g].priority = py_int_of(&value).ok_or_else(|| {
                format!(
                    "ansible_group_priority must be an integer, got {}",
                    match &value {
                        Data::Str(s) => format!("'{s}'"),
                        other => other.type_name().to_string(),
                    }
                )
            })?;
            return Ok(());
        }
        set_var(&mut self.groups[g].vars, key, value);
        self.groups[g]
            .origins
            .insert(key.to_string(), self.current_file.clone());
        Ok(())
    }

    pub(crate) fn set_host_var(&mut self, h: usize, key: &str, value: Data) {
        set_var(&mut self.hosts[h].vars, key, value);
        self.hosts[h]
            .origins
            .insert(key.to_string(), self.current_file.clone());
    }

    /// `InventoryData.reconcile_inventory`: every parentless group becomes a child of `all`,
    /// hosts in no group go to `ungrouped`, and hosts elsewhere leave `ungrouped`.
    pub(crate) fn reconcile(&mut self) -> Result<(), String> {
        for g in 0..self.groups.len() {
            if g != ALL && self.ancestors(g).is_empty() {
                self.add_child_group(ALL, g)?;
            }
        }
        for h in 0..self.hosts.len() {
            let mygroups = self.hosts[h].groups.clone();
            if mygroups.contains(&UNGROUPED) {
                if mygroups.iter().any(|g| *g != ALL && *g != UNGROUPED) {
                    self.group_remove_host(UNGROUPED, h);
                }
            } else if mygroups.is_empty() || (mygroups.len() == 1 && mygroups[0] == ALL) {
                self.group_add_host(UNGROUPED, h);
            }
        }
        Ok(())
    }

    /// `helpers.sort_groups`: by depth, then priority, then name.
    pub(crate) fn sorted_groups(&self, groups: &[usize]) -> Vec<usize> {
        let mut v = groups.to_vec();
        v.sort_by(|a, b| {
            let (ga, gb) = (&self.groups[*a], &self.groups[*b]);
            (ga.depth, ga.priority, &ga.name).cmp(&(gb.depth, gb.priority, &gb.name))
        });
        v
    }
}

/// Python's `int(value)` as `Group.set_variable` applies it to `ansible_group_priority`.
fn py_int_of(v: &Data) -> Option<i64> {
    match v {
        Data::Int(i) => i64::try_from(*i).ok(),
        Data::Bool(b) => Some(*b as i64),
        Data::Float(f) if f.is_finite() => Some(f.trunc() as i64),
        Data::Str(s) | Data::Unsafe(s) => {
            let t = s.trim();
            let (neg, d) = match t.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, t.strip_prefix('+').unwrap_or(t)),
            };
            if d.is_empty()
                || d.starts_with('_')
                || d.ends_with('_')
                || d.contains("__")
                || !d.chars().all(|c| c.is_ascii_digit() || c == '_')
            {
                return None;
            }
            let n: i64 = d.replace('_', "").parse().ok()?;
            Some(if neg { -n } else { n })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_follows_the_longest_parent_chain() {
        let mut d = InvData::new();
        let a = d.add_group("a");
        let b = d.add_group("b");
        let c = d.add_group("c");
        d.add_child_group(b, c).unwrap();
        d.add_child_group(a, b).unwrap();
        d.reconcile().unwrap();
        assert_eq!(d.groups[a].depth, 1);
        assert_eq!(d.groups[b].depth, 2);
        assert_eq!(d.groups[c].depth, 3);
        assert_eq!(d.groups[ALL].children, vec![UNGROUPED, a]);
    }

    #[test]
    fn loops_are_refused() {
        let mut d = InvData::new();
        let a = d.add_group("a");
        let b = d.add_group("b");
        d.add_child_group(a, b).unwrap();
        assert!(
            d.add_child_group(b, a)
                .unwrap_err()
                .contains("recursive dependency loop")
        );
        assert!(d.add_child_group(a, a).is_err());
    }

    #[test]
    fn ungrouped_membership_is_reconciled() {
        let mut d = InvData::new();
        let g = d.add_group("g");
        let h1 = d.add_host("h1", Some(UNGROUPED), None).unwrap();
        d.add_host("h1", Some(g), None).unwrap();
        let h2 = d.add_host("h2", Some(ALL), None).unwrap();
        d.reconcile().unwrap();
        assert!(!d.groups[UNGROUPED].hosts.contains(&h1));
        assert!(d.groups[UNGROUPED].hosts.contains(&h2));
    }

    /// Hostile input (docs/fuzzing.md): a few lines of wide host ranges, listed again and
    /// again, cost quadratic work (each host added searches its group's hosts).
    #[test]
    fn hosts_and_listings_are_bounded() {
        let mut inv = InvData::new();
        let g = inv.add_group("g");
        for i in 0..MAX_HOSTS {
            inv.add_host(&format!("h{i}"), Some(g), None).unwrap();
        }
        let e = inv.add_host("one-more", Some(g), None).unwrap_err();
        assert!(e.contains("more than 10000 hosts"), "{e}");
        let mut inv = InvData::new();
        let g = inv.add_group("g");
        for i in 0..MAX_HOST_ENTRIES {
            inv.add_host(&format!("h{}", i % 10), Some(g), None)
                .unwrap();
        }
        let e = inv.add_host("h1", Some(g), None).unwrap_err();
        assert!(e.contains("more than 100000 times"), "{e}");
    }

    #[test]
    fn port_only_from_first_definition() {
        let mut d = InvData::new();
        let h = d.add_host("h", None, Some(2222)).unwrap();
        d.add_host("h", None, Some(3333)).unwrap();
        assert_eq!(
            d.hosts[h].vars,
            vec![("ansible_port".to_string(), Data::Int(2222))]
        );
        let z = d.add_host("z", None, Some(0)).unwrap();
        assert!(d.hosts[z].vars.is_empty());
    }

    #[test]
    fn group_priority_parses_like_python_int() {
        let mut d = InvData::new();
        let g = d.add_group("g");
        d.set_group_var(g, "ansible_group_priority", Data::Str("10".into()))
            .unwrap();
        assert_eq!(d.groups[g].priority, 10);
        assert!(
            d.set_group_var(g, "ansible_group_priority", Data::Str("x".into()))
                .is_err()
        );
        assert!(d.groups[g].vars.is_empty());
    }
}
