//! Time: the tick expires offers, silent agents and frameworks past their failover timeout;
//! the allocation cycle turns the allocator's grants into offers.

use self::allocator::{AgentSlot, FrameworkSlot, Snapshot};
use super::*;

impl Master {
    /// Expires offers, agents and disconnected frameworks.
    pub fn tick(&mut self, now_ms: u64) {
        let expired: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.expires_ms <= now_ms)
            .map(|o| o.id.clone())
            .collect();
        for id in expired {
            let o = self.remove_offer(&id).expect("present");
            self.event(&o.framework_id, Event::Rescind { offer_id: id });
        }
        let silent: Vec<String> = self
            .agents
            .values()
            .filter(|a| {
                a.reachable && now_ms.saturating_sub(a.last_seen_ms) > self.cfg.agent_timeout_ms
            })
            .map(|a| a.id.clone())
            .collect();
        for a in silent {
            self.mark_unreachable(&a, now_ms);
        }
        let gone: Vec<String> = self
            .frameworks
            .values()
            .filter(|f| {
                f.disconnected_at_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) >= f.failover_timeout_ms)
            })
            .map(|f| f.id.clone())
            .collect();
        for f in gone {
            self.remove_framework(&f, now_ms);
        }
    }

    /// One allocation cycle: offers for connected frameworks, waiting reasons for the others.
    pub fn allocate(&mut self, now_ms: u64) {
        let agent_ids: Vec<String> = self.agents.keys().cloned().collect();
        let agents: Vec<AgentSlot> = self
            .agents
            .values()
            .map(|a| AgentSlot {
                id: a.id.clone(),
                available: a.available(),
                active: a.reachable && !a.recovered,
                total: a.total.clone(),
            })
            .collect();
        let fids: Vec<String> = self.frameworks.keys().cloned().collect();
        let frameworks: Vec<FrameworkSlot> = self
            .frameworks
            .values()
            .map(|f| {
                let mut allocated = f.used.clone();
                allocated.add(&f.offered);
                FrameworkSlot {
                    id: f.id.clone(),
                    role: f.role.clone(),
                    allocated,
                    active: f.connected,
                    suppressed: f.suppressed,
                    filters: f.filters.clone(),
                }
            })
            .collect();
        let result = allocator::allocate(&Snapshot {
            agents: &agents,
            frameworks: &frameworks,
            weights: &self.cfg.weights,
            min_allocatable: &self.cfg.min_allocatable,
            now_ms,
            rotation: self.rotation,
        });
        self.rotation = self.rotation.wrapping_add(1);
        let mut per_framework: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
        for g in &result.grants {
            let fid = fids[g.framework].clone();
            let aid = agent_ids[g.agent].clone();
            let oid = format!("{}-O{}", self.cfg.id, self.next_offer);
            self.next_offer += 1;
            let a = self.agents.get_mut(&aid).expect("agent");
            a.offered.add(&g.resources);
            let (hostname, port, attrs) = (
                a.hostname.clone(),
                a.port,
                crate::mesos::resources::attributes_json(&a.attributes),
            );
            let f = self.frameworks.get_mut(&fid).expect("framework");
            f.offered.add(&g.resources);
            f.waiting = None;
            let role = f.role.clone();
            per_framework.entry(g.framework).or_default().push(json!({
                "id": mid(&oid), "framework_id": mid(&fid), "agent_id": mid(&aid), "hostname": hostname,
                "url": {"scheme": "http", "address": {"hostname": hostname, "ip": hostname, "port": port}, "path": "/slave(1)"},
                "resources": g.resources.to_json(Some(&role)), "attributes": attrs,
                "allocation_info": {"role": role},
            }));
            self.offers.insert(
                oid.clone(),
                Offer {
                    id: oid,
                    framework_id: fid,
                    agent_id: aid,
                    resources: g.resources.clone(),
                    expires_ms: now_ms + self.cfg.offer_timeout_ms,
                },
            );
        }
        for (fi, offers) in per_framework {
            let fid = fids[fi].clone();
            self.event(&fid, Event::Offers(offers));
        }
        for (fi, why) in result.waiting {
            let fid = &fids[fi];
            let holding = self
                .offers
                .values()
                .filter(|o| &o.framework_id == fid)
                .count();
            let text = if holding > 0 {
                format!("holding {holding} offers (they are rescinded after the offer timeout)")
            } else {
                why.describe(&self.cfg.min_allocatable, now_ms)
            };
            if let Some(f) = self.frameworks.get_mut(fid) {
                f.waiting = Some(text);
            }
        }
    }
}
