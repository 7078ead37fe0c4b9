# frozen_string_literal: true

# The puma/unicorn-style hooks the C gem defined on the top-level object (section 1.4), each
# only when no method of that name exists already (a config file written for puma keeps its
# own). They ignore positional arguments and register the block for a lifecycle event.
{
  after_fork: :after_fork,
  after_fork_in_worker: :enter_child,
  after_fork_in_master: :enter_master,
  on_worker_boot: :after_fork,
  on_worker_fork: :before_fork,
  before_fork: :before_fork
}.each do |name, event|
  next if TOPLEVEL_BINDING.receiver.respond_to?(name, true)

  TOPLEVEL_BINDING.receiver.define_singleton_method(name) do |*_args, &block|
    Iodine.on_state(event, &block)
  end
end

# The master's pid file (`-pid FILE`): a trailing `/` means FILE/iodine.pid. It is written
# (an existing one replaced) when the server starts (`:pre_start`, after the listeners were
# bound: a second server that fails to bind never touches the running one's file), and
# removed when it finished, only if it still holds this process's pid.
if (pid_path = Iodine::DEFAULT_SETTINGS.delete(:pid_))
  pid_path = File.join(pid_path, "iodine.pid") if pid_path.end_with?("/")
  raise ArgumentError, "the pid file #{pid_path} is a directory" if File.directory?(pid_path)

  Iodine::DEFAULT_SETTINGS[:pid] = pid_path
  Iodine.on_state(:pre_start) { File.write(pid_path, "#{Process.pid}\r\n") }
  Iodine.on_state(:on_finish) do
    File.delete(pid_path) if Iodine.master? && File.file?(pid_path) && File.read(pid_path).to_i == Process.pid
  rescue SystemCallError
    nil
  end
end
