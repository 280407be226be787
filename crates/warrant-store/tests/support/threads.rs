//! A process's threads as Linux shows them in `/proc`, and whether this process may take a
//! nice value: for the tests of the SQLite commit thread's priority. Shared by the store's,
//! the server's and the CLI's tests (`#[path]`), so `/proc`'s format is read in one place.

/// One thread of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcThread {
    /// Its id.
    pub tid: i32,
    /// Its name, cut to 15 bytes as the kernel keeps it.
    pub name: String,
    /// Its nice value.
    pub nice: i32,
}

/// The threads of process `pid` (`"self"`: this one). A thread that ends while they are
/// read is left out.
pub fn threads(pid: &str) -> Vec<ProcThread> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let path = task.path();
        let (Ok(comm), Ok(stat)) =
            (std::fs::read_to_string(path.join("comm")), std::fs::read_to_string(path.join("stat")))
        else {
            continue; // a thread that ended meanwhile
        };
        // After the name in parentheses: the state is field 3, the nice value field 19.
        let (_, rest) = stat.rsplit_once(')').unwrap();
        let nice = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        let tid = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
        found.push(ProcThread { tid, name: comm.trim().to_owned(), nice });
    }
    found
}

/// Whether a thread of this process may take nice `nice` (a new thread starts at its
/// creator's value, and a child process has this one's privileges and limits): one tries.
pub fn may_take_nice(nice: i32) -> bool {
    std::thread::spawn(move || rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice).is_ok())
        .join()
        .unwrap()
}
