//! Size checks for functions whose output is not bounded by their input.
//!
//! DataFusion's memory pool counts what operators buffer (hash tables, sort
//! runs, aggregation state), not the arrays a scalar function returns.
//! `repeat('x', 2000000000)` or `range(1, 1000000000)` would allocate
//! gigabytes inside one function call, past any pool. Each such function is
//! replaced by a wrapper that estimates the output of the call from its
//! arguments first and refuses a call above an eighth of the lane's memory
//! budget, with an error that names the limit. Functions whose output grows
//! only with their input (`concat`, `upper`, …) need no check: their input was
//! already bounded.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::datatypes::FieldRef;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

use crate::Result;
use crate::session::Budget;

/// Share of a lane's budget one function call may produce.
const CALL_SHARE: usize = 8;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: len(s) × n bytes.
    Repeat,
    /// `lpad(s, n[, fill])`, `rpad`: n characters, up to 4 bytes each.
    Pad,
    /// `replace(s, from, to)`, `regexp_replace(s, re, to[, flags])`: at most
    /// one `to` per character boundary.
    Replace { to: usize },
    /// `range(start, stop[, step])` / `generate_series` (array forms).
    Range { inclusive: bool },
    /// `array_repeat(element, n)`: n elements.
    ArrayRepeat,
    /// `array_resize(array, n[, value])`: n elements.
    ArrayResize,
}

const GUARDED: [(&str, Growth); 9] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace { to: 2 }),
    ("regexp_replace", Growth::Replace { to: 2 }),
    ("range", Growth::Range { inclusive: false }),
    ("generate_series", Growth::Range { inclusive: true }),
    ("array_repeat", Growth::ArrayRepeat),
    ("array_resize", Growth::ArrayResize),
];

/// Replaces the guarded functions of `ctx` by checked wrappers.
pub(crate) fn install(ctx: &SessionContext, budget: Budget) -> Result<()> {
    let cap = budget.bytes / CALL_SHARE;
    let state = ctx.state();
    let functions = state.scalar_functions();
    for (name, growth) in GUARDED {
        let Some(inner) = functions.get(name) else {
            // Not in this build's function set: nothing to guard.
            continue;
        };
        ctx.register_udf(ScalarUDF::new_from_impl(Guarded {
            inner: inner.as_ref().clone(),
            growth,
            cap,
            budget_mib: budget.mib(),
            setting: budget.setting,
        }));
    }
    Ok(())
}

/// A function with an output-size check in front of it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Guarded {
    inner: ScalarUDF,
    growth: Growth,
    cap: usize,
    budget_mib: usize,
    setting: &'static str,
}

impl Guarded {
    fn check(&self, args: &ScalarFunctionArgs) -> DfResult<()> {
        let rows = if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            1
        } else {
            args.number_rows
        };
        let Some(bytes) = estimate(self.growth, &args.args, rows)? else {
            return Ok(());
        };
        if bytes > self.cap as u128 {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would produce about {} MiB in one call, more than the {} MiB one function \
                 call may use (1/{CALL_SHARE} of {} = {} MiB)",
                self.inner.name(),
                bytes / (1024 * 1024),
                self.cap / (1024 * 1024),
                self.setting,
                self.budget_mib
            )));
        }
        Ok(())
    }
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }
}

/// Upper bound of the bytes a call returns; `None` when the arguments are of
/// a shape this module does not estimate (the call then runs unchecked).
fn estimate(growth: Growth, args: &[ColumnarValue], rows: usize) -> DfResult<Option<u128>> {
    let arg = |i: usize| args.get(i);
    let total = |f: &dyn Fn(usize) -> u128| (0..rows).map(f).fold(0u128, u128::saturating_add);
    Ok(match growth {
        Growth::Repeat => {
            let (Some(s), Some(n)) = (arg(0), arg(1)) else {
                return Ok(None);
            };
            let (len, n) = (byte_lengths(s)?, integers(n)?);
            Some(total(&|i| len.at(i).saturating_mul(n.at(i))))
        }
        Growth::Pad => {
            let Some(n) = arg(1) else { return Ok(None) };
            let n = integers(n)?;
            Some(total(&|i| n.at(i).saturating_mul(4)))
        }
        Growth::Replace { to } => {
            let (Some(s), Some(t)) = (arg(0), arg(to)) else {
                return Ok(None);
            };
            let (len, to) = (byte_lengths(s)?, byte_lengths(t)?);
            Some(total(&|i| (len.at(i) + 1).saturating_mul(to.at(i) + 1)))
        }
        Growth::Range { inclusive } => range_bytes(args, rows, inclusive)?,
        Growth::ArrayRepeat => {
            let (Some(e), Some(n)) = (arg(0), arg(1)) else {
                return Ok(None);
            };
            let element = element_bytes(e, rows);
            let n = integers(n)?;
            Some(total(&|i| n.at(i).saturating_mul(element)))
        }
        Growth::ArrayResize => {
            let Some(n) = arg(1) else { return Ok(None) };
            let n = integers(n)?;
            Some(total(&|i| n.at(i).saturating_mul(16)))
        }
    })
}

/// One number per row, without expanding a scalar to the batch.
enum PerRow {
    One(u128),
    Many(Vec<u128>),
}

impl PerRow {
    fn at(&self, i: usize) -> u128 {
        match self {
            PerRow::One(v) => *v,
            PerRow::Many(v) => v.get(i).copied().unwrap_or(0),
        }
    }
}

fn non_negative(v: i64) -> u128 {
    u128::try_from(v).unwrap_or(0)
}

fn ints_of(array: &ArrayRef) -> DfResult<Vec<Option<i64>>> {
    let a = cast(array, &DataType::Int64)?;
    let a = a
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| DataFusionError::Internal("cast to Int64".to_owned()))?;
    Ok(a.iter().collect())
}

fn integers(v: &ColumnarValue) -> DfResult<PerRow> {
    Ok(match v {
        ColumnarValue::Scalar(s) => PerRow::One(match s.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(n)) => non_negative(n),
            _ => 0,
        }),
        ColumnarValue::Array(a) => PerRow::Many(
            ints_of(a)?
                .into_iter()
                .map(|n| n.map_or(0, non_negative))
                .collect(),
        ),
    })
}

fn byte_lengths(v: &ColumnarValue) -> DfResult<PerRow> {
    Ok(match v {
        ColumnarValue::Scalar(s) => PerRow::One(match s {
            ScalarValue::Utf8(Some(x))
            | ScalarValue::LargeUtf8(Some(x))
            | ScalarValue::Utf8View(Some(x)) => x.len() as u128,
            other => other.to_string().len() as u128,
        }),
        ColumnarValue::Array(a) => {
            let lengths = match length(a.as_ref()) {
                Ok(l) => l,
                Err(_) => length(cast(a, &DataType::LargeUtf8)?.as_ref())?,
            };
            PerRow::Many(
                ints_of(&lengths)?
                    .into_iter()
                    .map(|n| n.map_or(0, non_negative))
                    .collect(),
            )
        }
    })
}

fn element_bytes(v: &ColumnarValue, rows: usize) -> u128 {
    let bytes = match v {
        ColumnarValue::Scalar(s) => s.size(),
        ColumnarValue::Array(a) => a.get_array_memory_size() / rows.max(1),
    };
    bytes.max(8) as u128
}

/// Elements of `range` / `generate_series` calls × 8 bytes. Integer, date
/// and timestamp ranges are estimated; other shapes are not.
fn range_bytes(args: &[ColumnarValue], rows: usize, inclusive: bool) -> DfResult<Option<u128>> {
    let (start, stop, step) = match args {
        [stop] => (None, stop, None),
        [start, stop] => (Some(start), stop, None),
        [start, stop, step] => (Some(start), stop, Some(step)),
        _ => return Ok(None),
    };
    let data_type = stop.data_type();
    // Everything in one unit: integers as they are, dates in days,
    // timestamps in nanoseconds.
    let unit = match &data_type {
        DataType::Date32 | DataType::Date64 => Unit::Days,
        DataType::Timestamp(..) => Unit::Nanos,
        t if t.is_integer() => Unit::Plain,
        _ => return Ok(None),
    };
    let values = |v: &ColumnarValue| -> DfResult<Vec<Option<i64>>> {
        let array = match v {
            ColumnarValue::Array(a) => a.clone(),
            ColumnarValue::Scalar(s) => s.to_array()?,
        };
        let array = match unit {
            Unit::Plain => array,
            Unit::Days => cast(&array, &DataType::Date32)?,
            Unit::Nanos => cast(&array, &DataType::Timestamp(TimeUnit::Nanosecond, None))?,
        };
        let array = match unit {
            Unit::Days => cast(&array, &DataType::Int32)?,
            _ => array,
        };
        ints_of(&array)
    };
    let stops = values(stop)?;
    let starts = match start {
        Some(s) => values(s)?,
        None => vec![Some(0)],
    };
    let step = match step {
        None => 1,
        Some(ColumnarValue::Scalar(s)) => match step_of(s, unit) {
            Some(v) => v,
            None => return Ok(None),
        },
        Some(ColumnarValue::Array(_)) => return Ok(None),
    };
    let at = |v: &[Option<i64>], i: usize| v.get(i).or(v.first()).copied().flatten();
    let mut total = 0u128;
    for i in 0..rows {
        let (Some(a), Some(b)) = (at(&starts, i), at(&stops, i)) else {
            continue;
        };
        let span = i128::from(b) - i128::from(a);
        if step == 0 || span.signum() * step.signum() < 0 {
            continue;
        }
        let n = span / step + i128::from(inclusive);
        total = total.saturating_add(u128::try_from(n).unwrap_or(0).saturating_mul(8));
    }
    Ok(Some(total))
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Plain,
    Days,
    Nanos,
}

/// A step in `unit`, rounded towards the smallest step it can be (a month
/// counts 28 days), so that the element count is never underestimated.
fn step_of(s: &ScalarValue, unit: Unit) -> Option<i128> {
    const DAY_NS: i128 = 86_400_000_000_000;
    let (months, days, nanos): (i128, i128, i128) = match s {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            (v.months.into(), v.days.into(), v.nanoseconds.into())
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            (0, v.days.into(), i128::from(v.milliseconds) * 1_000_000)
        }
        ScalarValue::IntervalYearMonth(Some(m)) => ((*m).into(), 0, 0),
        other => {
            return match (unit, other.cast_to(&DataType::Int64).ok()?) {
                (Unit::Plain, ScalarValue::Int64(Some(v))) => Some(v.into()),
                _ => None,
            };
        }
    };
    let nanos_total = (months * 28 + days) * DAY_NS + nanos;
    Some(match unit {
        Unit::Plain => return None,
        // A step below a day still moves a date range by whole days.
        Unit::Days => (nanos_total / DAY_NS).max(i128::from(nanos_total > 0)),
        Unit::Nanos => nanos_total,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn scalar_i(v: i64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))
    }

    fn scalar_s(v: &str) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(v.to_owned())))
    }

    fn array_s(v: &[&str]) -> ColumnarValue {
        let a: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(v.to_vec()));
        ColumnarValue::Array(a)
    }

    #[test]
    fn estimates_follow_the_size_arguments_row_by_row() {
        let e = |g, args: &[ColumnarValue], rows| estimate(g, args, rows).expect("estimate");
        assert_eq!(
            e(Growth::Repeat, &[scalar_s("ab"), scalar_i(1000)], 1),
            Some(2000)
        );
        // Per row: 1×10 + 3×10, not the longest string times the rows.
        assert_eq!(
            e(Growth::Repeat, &[array_s(&["a", "abc"]), scalar_i(10)], 2),
            Some(40)
        );
        assert_eq!(
            e(Growth::Repeat, &[scalar_s("x"), scalar_i(-5)], 1),
            Some(0)
        );
        assert_eq!(
            e(Growth::Pad, &[scalar_s("x"), scalar_i(100)], 1),
            Some(400)
        );
        assert_eq!(
            e(
                Growth::Replace { to: 2 },
                &[scalar_s("aaa"), scalar_s("a"), scalar_s("bb")],
                1
            ),
            Some(12)
        );
        assert_eq!(
            e(
                Growth::Range { inclusive: false },
                &[scalar_i(1), scalar_i(11)],
                1
            ),
            Some(80)
        );
        assert_eq!(
            e(
                Growth::Range { inclusive: true },
                &[scalar_i(1), scalar_i(11), scalar_i(5)],
                1
            ),
            Some(24)
        );
        // A step that walks away from the stop yields nothing.
        assert_eq!(
            e(
                Growth::Range { inclusive: false },
                &[scalar_i(1), scalar_i(11), scalar_i(-1)],
                1
            ),
            Some(0)
        );
    }
}
