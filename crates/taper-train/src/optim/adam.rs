use super::{candle_optimizer, fused, scalar, Buffers, NamedVar, Optim, OptimState};
use crate::Result;
use candle_core::backprop::GradStore;

/// Settings of [`Adam`]: PyTorch's `Adam` (L2 penalty added to the gradient) or,
/// with `decoupled_weight_decay`, `AdamW`.
#[derive(Debug, Clone, Copy)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator for stability.
    pub eps: f64,
    /// Weight decay (L2 for Adam, decoupled for AdamW).
    pub weight_decay: f64,
    /// AdamW: decay the weights directly instead of through the gradient.
    pub decoupled_weight_decay: bool,
    /// Use the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
            amsgrad: false,
        }
    }
}

impl AdamConfig {
    /// PyTorch's `AdamW` defaults (weight decay 0.01, decoupled).
    pub fn adamw(lr: f64) -> Self {
        Self {
            lr,
            weight_decay: 0.01,
            decoupled_weight_decay: true,
            ..Self::default()
        }
    }
}

/// Adam and AdamW.
#[derive(Debug)]
pub struct Adam {
    vars: Vec<NamedVar>,
    cfg: AdamConfig,
    step: usize,
    m: Buffers,
    v: Buffers,
    vmax: Buffers,
}

impl Adam {
    /// Adam over `vars`.
    pub fn new(vars: Vec<NamedVar>, cfg: AdamConfig) -> Self {
        let n = vars.len();
        Self {
            vars,
            cfg,
            step: 0,
            m: Buffers::new(n),
            v: Buffers::new(n),
            vmax: Buffers::new(n),
        }
    }

    /// AdamW over `vars`.
    pub fn adamw(vars: Vec<NamedVar>, lr: f64, weight_decay: f64) -> Self {
        Self::new(
            vars,
            AdamConfig {
                weight_decay,
                ..AdamConfig::adamw(lr)
            },
        )
    }
}

impl Optim for Adam {
    fn name(&self) -> &'static str {
        if self.cfg.decoupled_weight_decay {
            "adamw"
        } else {
            "adam"
        }
    }
    fn vars(&self) -> &[NamedVar] {
        &self.vars
    }
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.cfg;
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            if !c.amsgrad
                && fused::fusable(
                    var.as_tensor(),
                    g,
                    [self.m.slots[i].as_ref(), self.v.slots[i].as_ref()],
                )
            {
                let p = var.as_tensor();
                // The moments are this optimizer's own buffers: rewritten in place.
                let m = match &self.m.slots[i] {
                    Some(m) => m.clone(),
                    None => p.zeros_like()?,
                };
                let v = match &self.v.slots[i] {
                    Some(v) => v.clone(),
                    None => p.zeros_like()?,
                };
                let (coupled_wd, decoupled_wd) = if c.decoupled_weight_decay {
                    (0.0, c.weight_decay)
                } else {
                    (c.weight_decay, 0.0)
                };
                fused::adam_step(
                    p,
                    &g.detach(),
                    &m,
                    &v,
                    fused::AdamStep {
                        beta1: c.beta1,
                        beta2: c.beta2,
                        eps: c.eps,
                        lr: c.lr,
                        coupled_wd,
                        decoupled_wd,
                        bc1,
                        bc2_sqrt,
                    },
                )?;
                self.m.slots[i] = Some(m);
                self.v.slots[i] = Some(v);
                continue;
            }
            // Gradients of variables come out of candle's backward pass still linked to
            // the graph that made them: detached, the optimizer state holds numbers
            // only, not every step's graph (a leak of about 10 MB a step otherwise).
            let mut g = g.detach();
            let mut p = var.as_tensor().detach();
            if c.weight_decay != 0.0 {
                if c.decoupled_weight_decay {
                    p = (p * (1.0 - c.lr * c.weight_decay))?;
                } else {
                    g = (g + (&p * c.weight_decay)?)?;
                }
            }
            let m = match &self.m.slots[i] {
                None => (&g * (1.0 - c.beta1))?,
                Some(m) => ((m * c.beta1)? + (&g * (1.0 - c.beta1))?)?,
            };
            let g2 = g.sqr()?;
            let v = match &self.v.slots[i] {
                None => (&g2 * (1.0 - c.beta2))?,
                Some(v) => ((v * c.beta2)? + (&g2 * (1.0 - c.beta2))?)?,
            };
            let vhat = if c.amsgrad {
                let vm = match &self.vmax.slots[i] {
                    None => v.clone(),
                    Some(vm) => vm.maximum(&v)?,
                };
                self.vmax.slots[i] = Some(vm.clone());
                vm
            } else {
                v.clone()
            };
            let denom = ((vhat.sqrt()? / bc2_sqrt)? + c.eps)?;
            let update = ((&m / denom)? * (c.lr / bc1))?;
            var.set(&(p - update)?)?;
            self.m.slots[i] = Some(m);
            self.v.slots[i] = Some(v);
        }
        Ok(())
    }
    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }
    fn state(&self) -> OptimState {
        let mut s = OptimState::default();
        self.m.save(&self.vars, "exp_avg", &mut s);
        self.v.save(&self.vars, "exp_avg_sq", &mut s);
        self.vmax.save(&self.vars, "max_exp_avg_sq", &mut s);
        s.scalars.insert("step".into(), self.step as f64);
        s.scalars.insert("lr".into(), self.cfg.lr);
        s
    }
    fn load_state(&mut self, st: &OptimState) -> Result<()> {
        self.m.load(&self.vars, "exp_avg", st)?;
        self.v.load(&self.vars, "exp_avg_sq", st)?;
        self.vmax.load(&self.vars, "max_exp_avg_sq", st)?;
        self.step = scalar(st, "step")? as usize;
        self.cfg.lr = scalar(st, "lr")?;
        Ok(())
    }
}

candle_optimizer!(Adam, AdamConfig);
