//! Coefficients checked against scikit-learn 1.9.1 on the full embedded data sets.
//!
//! The numbers were printed by `tools/sklearn_reference.py` (run it with the
//! repository's `bench/.venv`) and pasted here verbatim.

use taper_regression::preprocessing::StandardScaler;
use taper_regression::{load_breast_cancer, load_diabetes, LinearRegression, LogisticRegression};

// LinearRegression()
const OLS_COEF: [f64; 10] = [
    -0.036361224223623534,
    -22.859648090498354,
    5.602962091923719,
    1.1168079933181838,
    -1.0899963340632226,
    0.7464504555142124,
    0.3720047150891379,
    6.53383193599034,
    68.48312496478829,
    0.2801169893214981,
];
const OLS_INTERCEPT: f64 = -334.5671385187875;
// Ridge(alpha=1.0)
const RIDGE_COEF: [f64; 10] = [
    -0.03285239685543118,
    -22.607045432279946,
    5.640405234365652,
    1.11899757004851,
    -0.9146734842698867,
    0.5849098252881729,
    0.17788523837880826,
    6.250441778661576,
    63.179080873617295,
    0.28776690289978546,
];
const RIDGE_INTERCEPT: f64 = -316.07711860428856;
// Lasso(alpha=0.1, max_iter=1_000_000, tol=1e-12)
const LASSO_COEF: [f64; 10] = [
    -0.03422279260528431,
    -22.31888053378094,
    5.628234934900228,
    1.1138766959004829,
    -0.9348422389466338,
    0.6134460927137578,
    0.17627318118600926,
    5.754816262364678,
    64.32896338771766,
    0.2853755577144852,
];
const LASSO_INTERCEPT: f64 = -318.1288128213977;
// ElasticNet(alpha=0.1, l1_ratio=0.5, max_iter=1_000_000, tol=1e-12)
const ENET_COEF: [f64; 10] = [
    -0.01604110828697067,
    -18.035453744885857,
    5.949902529029009,
    1.1154790215212393,
    0.4240628014279927,
    -0.637511394334093,
    -1.2992967310888814,
    3.4286234222702534,
    23.457507381537788,
    0.3386381087348114,
];
const ENET_INTERCEPT: f64 = -178.7755146016299;
// LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000) on standardised breast cancer (all rows), default lbfgs
const LOGIT_LBFGS_COEF: [f64; 30] = [
    -0.36309271459667175,
    -0.3876752832491647,
    -0.3510622995756718,
    -0.4356092343712059,
    -0.16183174382641774,
    0.562653997892637,
    -0.8599168401490287,
    -0.9622797983211677,
    0.07620922296299033,
    0.322225619239755,
    -1.29094245229492,
    0.26892197925301864,
    -0.6599752411473979,
    -1.0125572476150262,
    -0.27721304404227853,
    0.7363236167112172,
    0.11053898364154517,
    -0.33340679056156947,
    0.29579324467468565,
    0.680920093836756,
    -1.0292628640311794,
    -1.3146082460067106,
    -0.8233480287942863,
    -1.0107062593053264,
    -0.6706808351828012,
    0.04456404486558817,
    -0.8733340569420265,
    -0.9120031277617598,
    -0.8878373648831052,
    -0.4798189992677786,
];
const LOGIT_LBFGS_INTERCEPT: f64 = 0.21450294878646844;
// Same, solver='newton-cholesky'
const LOGIT_COEF: [f64; 30] = [
    -0.36309253190647334,
    -0.3876754424085947,
    -0.3510621186677118,
    -0.43560980327511134,
    -0.16183110280313243,
    0.5626540337053748,
    -0.8599171195795225,
    -0.9622802234768022,
    0.07620903147701859,
    0.3222262369502909,
    -1.290942289665691,
    0.2689219013860395,
    -0.6599745965524895,
    -1.0125577321734927,
    -0.2772129589128547,
    0.7363240127821212,
    0.11053932078344791,
    -0.333407618872738,
    0.2957930258946486,
    0.6809196730549372,
    -1.029262261634046,
    -1.3146076344380306,
    -0.8233473825619096,
    -1.0107068321012709,
    -0.6706819627714261,
    0.04456425178974258,
    -0.8733339165121516,
    -0.9120031219156355,
    -0.8878373243044497,
    -0.47981890803844507,
];
const LOGIT_INTERCEPT: f64 = 0.2145027173973692;
// LogisticRegression(C=1.0, solver='newton-cholesky') multinomial on standardised iris, coef_ row-major (3 x 4)
const IRIS_COEF: [f64; 12] = [
    -1.0740661541568246,
    1.1601151162144565,
    -1.9306918616825628,
    -1.8115561242471037,
    0.5878102398479433,
    -0.3618406263284968,
    -0.363431022937377,
    -0.8262695764030459,
    0.48625591430888093,
    -0.7982744898859606,
    2.2941228846199397,
    2.6378257006501475,
];
const IRIS_INTERCEPT: [f64; 3] = [
    -0.20524113301621494,
    2.0748397842352206,
    -1.8695986512190055,
];
// OLS inference on diabetes (numpy lstsq + scipy.stats.t): [intercept, coefficients...]
const OLS_SE: [f64; 11] = [
    67.45462110427022,
    0.21704143540876225,
    5.835821285014873,
    0.7171055005609281,
    0.22523816918827072,
    0.5733318585493484,
    0.5308343897653841,
    0.7824638456259781,
    5.958637837216024,
    15.66971923868814,
    0.273313950359366,
];
const OLS_P: [f64; 11] = [
    1.016617291978077e-06,
    0.8670306337000941,
    0.0001041671192769254,
    4.296391419523974e-14,
    1.0242783922116e-06,
    0.05794760536888741,
    0.16039024001446517,
    0.6347232557748897,
    0.2734586936606545,
    1.555899086503218e-05,
    0.30598952619642616,
];

/// Largest relative error over all entries, relative to the largest reference magnitude
/// (so coefficients that are nearly zero are judged on the scale of the whole vector).
fn max_rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / scale)
        .fold(0.0, f64::max)
}

/// Entry-wise relative error, for the closed-form fits where every digit should agree.
fn max_entry_rel_err(got: &[f64], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs())
        .fold(0.0, f64::max)
}

#[test]
fn ols_matches_sklearn() {
    let ds = load_diabetes().unwrap();
    let m = LinearRegression::ols().fit_dataset(&ds).unwrap();
    let e = max_entry_rel_err(m.coef(), &OLS_COEF);
    let ei = ((m.intercept() - OLS_INTERCEPT) / OLS_INTERCEPT).abs();
    eprintln!("OLS: max relative coefficient error {e:.2e}, intercept {ei:.2e}");
    assert!(e < 1e-6 && ei < 1e-6);
    assert_eq!(m.coef_of("bmi"), Some(m.coef()[2]));
}

#[test]
fn ridge_matches_sklearn() {
    let ds = load_diabetes().unwrap();
    let m = LinearRegression::ridge(1.0).fit_dataset(&ds).unwrap();
    let e = max_entry_rel_err(m.coef(), &RIDGE_COEF);
    let ei = ((m.intercept() - RIDGE_INTERCEPT) / RIDGE_INTERCEPT).abs();
    eprintln!("ridge: max relative coefficient error {e:.2e}, intercept {ei:.2e}");
    assert!(e < 1e-6 && ei < 1e-6);
}

// Coordinate descent stops on a duality gap, which bounds the objective, not the
// coefficients: with tol 1e-12 on both sides the objective is exact to ~1e-12·||y||², and
// the coefficients, which the correlated s1..s6 columns make poorly determined, are only
// guaranteed to about sqrt(gap / smallest curvature) ~ 1e-6 of the largest coefficient.
// (Measured agreement is ~1e-15, because both sides run the same cyclic sweep order and
// stopping rule; the bound below does not rely on that.)
const CD_TOL: f64 = 1e-5;

#[test]
fn lasso_matches_sklearn() {
    let ds = load_diabetes().unwrap();
    let m = LinearRegression::lasso(0.1)
        .max_iter(1_000_000)
        .tol(1e-12)
        .fit_dataset(&ds)
        .unwrap();
    let e = max_rel_err(m.coef(), &LASSO_COEF);
    let ei = ((m.intercept() - LASSO_INTERCEPT) / LASSO_INTERCEPT).abs();
    eprintln!(
        "lasso: {} sweeps, max relative coefficient error {e:.2e}, intercept {ei:.2e}",
        m.n_iter()
    );
    assert!(m.converged());
    assert!(e < CD_TOL && ei < CD_TOL);
}

#[test]
fn elastic_net_matches_sklearn() {
    let ds = load_diabetes().unwrap();
    let m = LinearRegression::elastic_net(0.1, 0.5)
        .max_iter(1_000_000)
        .tol(1e-12)
        .fit_dataset(&ds)
        .unwrap();
    let e = max_rel_err(m.coef(), &ENET_COEF);
    let ei = ((m.intercept() - ENET_INTERCEPT) / ENET_INTERCEPT).abs();
    eprintln!(
        "elastic net: {} sweeps, max relative coefficient error {e:.2e}, intercept {ei:.2e}",
        m.n_iter()
    );
    assert!(m.converged());
    assert!(e < CD_TOL && ei < CD_TOL);
}

// Newton converges quadratically, so our fit is exact to ~1e-12 and agrees with
// scikit-learn's Newton-Cholesky solver (gradient ~1e-10 at its answer) to ~1e-9.
// Against the default L-BFGS, whose answer still has a gradient of ~6e-6 at tol=1e-12,
// agreement is only ~1e-6, which is what the looser check below allows.
#[test]
fn logistic_matches_sklearn() {
    let ds = load_breast_cancer().unwrap();
    let (_, xs) = StandardScaler::fit_transform(&ds.x).unwrap();
    let labels = ds.labels().unwrap();
    let m = LogisticRegression::new()
        .tol(1e-12)
        .fit(&xs, &labels)
        .unwrap();
    let e = max_rel_err(m.coef().as_slice(), &LOGIT_COEF);
    let ei = ((m.intercept()[0] - LOGIT_INTERCEPT) / LOGIT_INTERCEPT).abs();
    let e_lbfgs = max_rel_err(m.coef().as_slice(), &LOGIT_LBFGS_COEF);
    let ei_lbfgs = ((m.intercept()[0] - LOGIT_LBFGS_INTERCEPT) / LOGIT_LBFGS_INTERCEPT).abs();
    eprintln!(
        "logistic: {} Newton steps, vs newton-cholesky: coef {e:.2e}, intercept {ei:.2e}; \
         vs lbfgs: coef {e_lbfgs:.2e}, intercept {ei_lbfgs:.2e}",
        m.n_iter()
    );
    assert!(m.converged());
    assert!(e < 1e-8 && ei < 1e-8);
    assert!(e_lbfgs < 1e-5 && ei_lbfgs < 1e-5);
}

// L-BFGS stops at a gradient max-norm of 1e-10 (per-sample objective). The Hessian's
// smallest eigenvalue is ~1/(C·n) ≈ 7e-3 here, so the distance to the optimum can be up
// to ~1e-8 per unit of gradient scale; measured ~2e-8. 1e-6 bounds it with margin.
#[test]
fn multinomial_matches_sklearn() {
    let ds = taper_regression::load_iris().unwrap();
    let (_, xs) = StandardScaler::fit_transform(&ds.x).unwrap();
    let labels = ds.labels().unwrap();
    let m = LogisticRegression::new()
        .tol(1e-10)
        .fit(&xs, &labels)
        .unwrap();
    assert_eq!(m.coef().shape(), (3, 4));
    let row_major: Vec<f64> = m.coef().transpose().as_slice().to_vec();
    let e = max_rel_err(&row_major, &IRIS_COEF);
    let ei = max_rel_err(m.intercept().as_slice(), &IRIS_INTERCEPT);
    eprintln!(
        "multinomial iris: {} L-BFGS steps, coef {e:.2e}, intercept {ei:.2e}",
        m.n_iter()
    );
    assert!(m.converged());
    assert!(e < 1e-6 && ei < 1e-6);
}

#[test]
fn ols_inference_matches_textbook_formulas() {
    let ds = load_diabetes().unwrap();
    let m = LinearRegression::ols().fit_dataset(&ds).unwrap();
    let s = m.summary().expect("OLS fits carry a summary");
    let mut se = vec![s.intercept_std_error.unwrap()];
    se.extend(&s.std_errors);
    let mut p = vec![s.intercept_p_value.unwrap()];
    p.extend(&s.p_values);
    let e_se = max_entry_rel_err(&se, &OLS_SE);
    let e_p = max_entry_rel_err(&p, &OLS_P);
    eprintln!("OLS inference: standard errors {e_se:.2e}, p-values {e_p:.2e}");
    assert!(e_se < 1e-8);
    // p-values go through the incomplete beta function, accurate to ~1e-12 relative here.
    assert!(e_p < 1e-8);
    assert_eq!(s.df_resid, 431.0);
}
