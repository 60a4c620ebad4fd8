"""Replacing the actors that hold weights: rollout actors and GRPO-CARE's EMA reference.

A stateless scoring actor is replaced by the feeder itself (cluster/feeder.py). A rollout actor or the
reference needs weights first, and only the controller has them, so their replacements are made here, at the
two places where the learner's weights are settled: while the controller waits for a batch (the learner is
idle), and before a weight publish. A replacement

- rollout: starts its engine, loads the learner's current weights as version v through the object store, and
  only then joins the rotation (`RolloutFeeder.install`); its groups carry version v, so the buffer's
  max_staleness check holds for them as for any other;
- reference: loads the EMA state of the latest checkpoint (the initial policy when there is none), then takes
  the k EMA steps due since with the current policy weights in place of the k policies in between
  (`EMAReference.catch_up`): exact when k = 0, an approximation otherwise, counted in
  `care/ema_approximated_updates`. The groups parked for it are then re-scored.

Each role is restarted at most `cluster.max_restarts` times; past that a dead reference stops the run, and a
dead rollout actor stays out of rotation while another serves (the run stops when none is left).
"""
from __future__ import annotations

import ray

from cluster.checkpoint import latest_checkpoint


class ConsumerRestarts:
    def __init__(self, feeder, learner, respawn: dict, max_restarts: int, checkpoint_root,
                 startup_timeout_s: float = 900.0):
        self.feeder, self.learner = feeder, learner
        self.respawn = respawn
        self.max_restarts = max_restarts
        self.checkpoint_root = checkpoint_root
        self.startup_timeout_s = startup_timeout_s

    def revive(self, version: int) -> int:
        """Replace every dead rollout / reference actor, serving the learner's weights as `version`; returns
        how many were replaced. Cheap when nothing died."""
        dead = self.feeder.dead_consumers()
        if not any(dead.values()):
            return 0
        weights = None
        replaced = 0
        for role, indices in dead.items():
            for index in indices:
                attempt = self.feeder.restarts[role] + 1
                if attempt > self.max_restarts:
                    self._give_up(role, index)
                    continue
                actor = self.respawn[role](index, attempt)
                try:
                    ray.get(actor.ready.remote(), timeout=self.startup_timeout_s)
                except Exception as e:  # noqa: BLE001 - re-raised naming the role
                    raise RuntimeError(f"the replacement of {role} actor {index} did not start: "
                                       f"{type(e).__name__}: {str(e)[:300]}") from e
                weights = weights or self.learner.export_weights()
                if role == "rollout":
                    ray.get(actor.load_weights.remote(weights["ref"], version))
                    print(f"[waypoint] rollout actor {index} died; its replacement serves version {version}",
                          flush=True)
                else:
                    ckpt = latest_checkpoint(self.checkpoint_root)
                    info = ray.get(actor.restore.remote(str(ckpt / "reference") if ckpt else None, weights["ref"],
                                                        version))
                    print(f"[waypoint] reference actor {index} died; its replacement has the EMA of version "
                          f"{info['restored_version']} ({ckpt or 'the initial policy'}) plus "
                          f"{info['approximated_updates']} EMA step(s) caught up with version {version}", flush=True)
                self.feeder.install(role, index, actor)
                replaced += 1
        return replaced

    def _give_up(self, role: str, index: int) -> None:
        alive = len(self.feeder.rollout) - len(self.feeder.dead_consumers()["rollout"])
        if role == "rollout" and alive > 0:
            return          # the others serve on; this one stays out of rotation
        raise RuntimeError(f"the {role} actor {index} died and cluster.max_restarts ({self.max_restarts}) "
                           f"replacements of that role are used up")
