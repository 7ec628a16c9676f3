//! The WASI preview 1 imports a proxy-wasm module built for `wasm32-wasip1` needs, written by
//! hand as proxy-wasm-cpp-host does: stdout/stderr become logs, the clock and randomness are
//! the test's, there are no files, arguments or environment, and `proc_exit` traps.

use wasmtime::{Caller, Linker};
use wasmtime::{Result, format_err as anyhow};

use crate::abi::LogLevel;
use crate::host::{HostState, LogLine, read, write, write_u32};

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const INVAL: i32 = 28;
const NOSYS: i32 = 52;
const NOTSUP: i32 = 58;

type C<'a> = Caller<'a, HostState>;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        M,
        "fd_write",
        |mut c: C<'_>, fd: i32, iovs: i32, n: i32, ret: i32| -> Result<i32> {
            c.data_mut().hostcalls += 1;
            let level = match fd {
                1 => LogLevel::Info,
                2 => LogLevel::Error,
                _ => return Ok(BADF),
            };
            let mut text = Vec::new();
            for i in 0..n {
                let iov = read(&mut c, iovs + i * 8, 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                text.extend(read(&mut c, ptr, len)?);
            }
            write_u32(&mut c, ret, text.len() as u32)?;
            let message = String::from_utf8_lossy(&text)
                .trim_end_matches('\n')
                .to_owned();
            c.data_mut().logs.push(LogLine { level, message });
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        M,
        "clock_time_get",
        |mut c: C<'_>, id: i32, _precision: i64, ret: i32| -> Result<i32> {
            c.data_mut().hostcalls += 1;
            if id != 0 && id != 1 {
                return Ok(NOTSUP);
            }
            let now = c.data().shared().now_ns;
            write(&mut c, ret, &now.to_le_bytes())?;
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        M,
        "random_get",
        |mut c: C<'_>, buf: i32, len: i32| -> Result<i32> {
            c.data_mut().hostcalls += 1;
            let bytes: Vec<u8> = {
                let mut s = c.data().shared();
                (0..len).map(|_| s.next_random() as u8).collect()
            };
            write(&mut c, buf, &bytes)?;
            Ok(SUCCESS)
        },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            M,
            name,
            |mut c: C<'_>, count: i32, size: i32| -> Result<i32> {
                write_u32(&mut c, count, 0)?;
                write_u32(&mut c, size, 0)?;
                Ok(SUCCESS)
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(M, name, |_: C<'_>, _: i32, _: i32| -> Result<i32> {
            Ok(SUCCESS)
        })?;
    }
    // The caller adds the module's last critical log to the error.
    linker.func_wrap(M, "proc_exit", |_: C<'_>, code: i32| -> Result<()> {
        Err(anyhow!("module called proc_exit({code})"))
    })?;
    linker.func_wrap(M, "fd_close", |_: C<'_>, _: i32| -> Result<i32> {
        Ok(SUCCESS)
    })?;
    linker.func_wrap(
        M,
        "fd_seek",
        |_: C<'_>, _: i32, _: i64, _: i32, _: i32| -> Result<i32> { Ok(BADF) },
    )?;
    linker.func_wrap(
        M,
        "fd_fdstat_get",
        |_: C<'_>, fd: i32, _: i32| -> Result<i32> {
            Ok(if fd == 1 || fd == 2 { NOSYS } else { BADF })
        },
    )?;
    linker.func_wrap(
        M,
        "fd_read",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32| -> Result<i32> { Ok(BADF) },
    )?;
    linker.func_wrap(M, "sched_yield", |_: C<'_>| -> Result<i32> { Ok(SUCCESS) })?;
    linker.func_wrap(
        M,
        "fd_prestat_get",
        |_: C<'_>, _: i32, _: i32| -> Result<i32> { Ok(BADF) },
    )?;
    linker.func_wrap(
        M,
        "fd_prestat_dir_name",
        |_: C<'_>, _: i32, _: i32, _: i32| -> Result<i32> { Ok(INVAL) },
    )?;
    Ok(())
}
