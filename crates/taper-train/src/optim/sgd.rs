use super::{candle_optimizer, scalar, Buffers, NamedVar, Optim, OptimState};
use crate::Result;
use candle_core::backprop::GradStore;

/// Settings of [`Sgd`] (PyTorch's `torch.optim.SGD`).
#[derive(Debug, Clone, Copy)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0: plain SGD).
    pub momentum: f64,
    /// Dampening of the momentum.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum (needs momentum > 0 and no dampening).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// Stochastic gradient descent with momentum, Nesterov and weight decay.
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<NamedVar>,
    cfg: SgdConfig,
    momentum: Buffers,
}

impl Sgd {
    /// SGD over `vars`.
    pub fn new(vars: Vec<NamedVar>, cfg: SgdConfig) -> Self {
        let n = vars.len();
        Self {
            vars,
            cfg,
            momentum: Buffers::new(n),
        }
    }
}

impl Optim for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }
    fn vars(&self) -> &[NamedVar] {
        &self.vars
    }
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.cfg;
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            // Gradients of variables come out of candle's backward pass still linked to
            // the graph that made them: detached, the optimizer state holds numbers
            // only, not every step's graph (a leak of about 10 MB a step otherwise).
            let mut g = g.detach();
            if c.weight_decay != 0.0 {
                g = (g + (var.as_tensor().detach() * c.weight_decay)?)?;
            }
            if c.momentum != 0.0 {
                let buf = match &self.momentum.slots[i] {
                    None => g.clone(),
                    Some(b) => ((b * c.momentum)? + (&g * (1.0 - c.dampening))?)?,
                };
                g = if c.nesterov {
                    (g + (&buf * c.momentum)?)?
                } else {
                    buf.clone()
                };
                self.momentum.slots[i] = Some(buf);
            }
            var.set(&(var.as_tensor() - (g * c.lr)?)?)?;
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
        self.momentum.save(&self.vars, "momentum_buffer", &mut s);
        s.scalars.insert("lr".into(), self.cfg.lr);
        s
    }
    fn load_state(&mut self, st: &OptimState) -> Result<()> {
        self.momentum.load(&self.vars, "momentum_buffer", st)?;
        self.cfg.lr = scalar(st, "lr")?;
        Ok(())
    }
}

candle_optimizer!(Sgd, SgdConfig);
