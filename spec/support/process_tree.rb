# frozen_string_literal: true

require "set"

# Processes as /proc shows them, for the specs that watch a cluster's master and workers (or
# processes an app forks): who is alive, whose children, and bounded waits. Also how to start
# `exe/iodine` (through ServerProcess) in a process group of its own, so that a spec can signal
# the whole group as a terminal's Ctrl-C or systemd's control-group stop does.
module ProcessTree
  # `ruby -e GROUP_EXEC ARGS...`: a process group of its own, then `exe/iodine ARGS...` (the
  # same pid: exec). Run through ServerProcess's `script:`, so its log, wait and stop apply.
  GROUP_EXEC = "Process.setpgid(0, 0); exec(RbConfig.ruby, \"-I\#{File.join(#{ROOT.inspect}, 'lib')}\", " \
               "#{File.join(ROOT, 'exe', 'iodine').inspect}, *ARGV)"

  module_function

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # [state, ppid] of a process, nil when there is none.
  def proc_stat(pid)
    stat = File.read("/proc/#{pid}/stat")
    fields = stat[(stat.rindex(")") + 2)..].split
    [fields[0], fields[1].to_i]
  rescue Errno::ENOENT, Errno::ESRCH
    nil
  end

  # Alive and not a zombie.
  def alive?(pid)
    state, = proc_stat(pid)
    !state.nil? && !%w[Z X].include?(state)
  end

  # The live child processes of `pid` (a master's workers), sorted.
  def children(pid)
    Dir.children("/proc").grep(/\A\d+\z/).map(&:to_i).select do |candidate|
      state, ppid = proc_stat(candidate)
      ppid == pid && !%w[Z X].include?(state)
    end.sort
  end

  # The "PID EVENT" lines processes appended to `path`, as [[pid, event], ...] ([] before any).
  def pid_events(path)
    return [] unless File.exist?(path)

    File.readlines(path, chomp: true).map do |line|
      pid, event = line.split(" ", 2)
      [pid.to_i, event]
    end
  end

  # The processes that noted `on_start` in `path` (the workers that serve).
  def serving_pids(path)
    pid_events(path).filter_map { |pid, event| pid if event == "on_start" }.to_set
  end

  # The block's value once truthy, or nil after `seconds` (polled every `interval`).
  def wait_until(seconds, interval = 0.05)
    deadline = now + seconds
    loop do
      value = yield
      return value if value
      return nil if now > deadline

      sleep interval
    end
  end

  # KILLs every process of `pids` still alive (a spec's leftovers).
  def kill_all(pids)
    pids.each do |pid|
      Process.kill("KILL", pid) if alive?(pid)
    rescue Errno::ESRCH, Errno::EPERM
      nil
    end
  end

  # KILLs the whole process group `pgid` (nothing when it is gone).
  def kill_group(pgid)
    Process.kill("KILL", -pgid)
  rescue Errno::ESRCH, Errno::EPERM
    nil
  end

  # Starts `exe/iodine ARGS` (`-p PORT -b 127.0.0.1` added) as a ServerProcess in a process
  # group of its own (its pgid is its pid); waits for the port unless `wait_for: nil`.
  def group_server(args, port: ServerProcess.free_port, env: {}, wait_for: :port)
    ServerProcess.new(nil, port: port, env: env, wait_for: wait_for,
                           script: ["-e", GROUP_EXEC, "--", "-p", port.to_s, "-b", "127.0.0.1", *args])
  end

  # Runs `command` (an argv) in a process group of its own, killed (the whole group) after
  # `timeout` seconds; [stdout + stderr, Process::Status, timed_out].
  def run_bounded(command, timeout: 15, env: {}, chdir: ROOT)
    require "open3"
    Open3.popen2e(env, *command, chdir: chdir, pgroup: true) do |stdin, out, waiter|
      stdin.close
      reader = Thread.new { out.read }
      timed_out = !waiter.join(timeout)
      if timed_out
        kill_group(waiter.pid)
        waiter.join
      end
      [reader.value, waiter.value, timed_out]
    end
  end
end
