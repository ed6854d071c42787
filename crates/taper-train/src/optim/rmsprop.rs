use super::{candle_optimizer, scalar, Buffers, NamedVar, Optim, OptimState};
use crate::Result;
use candle_core::backprop::GradStore;

/// Settings of [`RmsProp`] (PyTorch's `torch.optim.RMSprop`).
#[derive(Debug, Clone, Copy)]
pub struct RmsPropConfig {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average.
    pub alpha: f64,
    /// Added to the denominator for stability.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor.
    pub momentum: f64,
    /// Normalise by the gradient's estimated variance instead of its second moment.
    pub centered: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

/// RMSprop, optionally centered and with momentum.
#[derive(Debug)]
pub struct RmsProp {
    vars: Vec<NamedVar>,
    cfg: RmsPropConfig,
    sq: Buffers,
    gavg: Buffers,
    buf: Buffers,
}

impl RmsProp {
    /// RMSprop over `vars`.
    pub fn new(vars: Vec<NamedVar>, cfg: RmsPropConfig) -> Self {
        let n = vars.len();
        Self {
            vars,
            cfg,
            sq: Buffers::new(n),
            gavg: Buffers::new(n),
            buf: Buffers::new(n),
        }
    }
}

impl Optim for RmsProp {
    fn name(&self) -> &'static str {
        "rmsprop"
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
            let g2 = (g.sqr()? * (1.0 - c.alpha))?;
            let sq = match &self.sq.slots[i] {
                None => g2,
                Some(s) => ((s * c.alpha)? + g2)?,
            };
            let avg = if c.centered {
                let ga = match &self.gavg.slots[i] {
                    None => (&g * (1.0 - c.alpha))?,
                    Some(a) => ((a * c.alpha)? + (&g * (1.0 - c.alpha))?)?,
                };
                let avg = ((&sq - ga.sqr()?)?.sqrt()? + c.eps)?;
                self.gavg.slots[i] = Some(ga);
                avg
            } else {
                (sq.sqrt()? + c.eps)?
            };
            let step = if c.momentum > 0.0 {
                let b = match &self.buf.slots[i] {
                    None => (&g / &avg)?,
                    Some(b) => ((b * c.momentum)? + (&g / &avg)?)?,
                };
                self.buf.slots[i] = Some(b.clone());
                b
            } else {
                (&g / &avg)?
            };
            var.set(&(var.as_tensor() - (step * c.lr)?)?)?;
            self.sq.slots[i] = Some(sq);
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
        self.sq.save(&self.vars, "square_avg", &mut s);
        self.gavg.save(&self.vars, "grad_avg", &mut s);
        self.buf.save(&self.vars, "momentum_buffer", &mut s);
        s.scalars.insert("lr".into(), self.cfg.lr);
        s
    }
    fn load_state(&mut self, st: &OptimState) -> Result<()> {
        self.sq.load(&self.vars, "square_avg", st)?;
        self.gavg.load(&self.vars, "grad_avg", st)?;
        self.buf.load(&self.vars, "momentum_buffer", st)?;
        self.cfg.lr = scalar(st, "lr")?;
        Ok(())
    }
}

candle_optimizer!(RmsProp, RmsPropConfig);
