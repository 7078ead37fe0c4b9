# frozen_string_literal: true

require "spec_helper"
require "open3"
require "tmpdir"

# The command line and the process lifecycle, run as real processes (`exe/iodine`, or Ruby
# scripts that require iodine): `--preload`/`-preload`/`-warmup` (autoloads and one GET / before
# serving, once, in the master), bad ports and thread counts as one-line errors, bind failures,
# warnings through the logger, `-C` for IODINE_PARSE_CLI scripts, `require "iodine"` leaving
# ::Rack alone, the startup banner, and a second INT while a cluster stops.
RSpec.describe "iodine command line and lifecycle" do
  # Iodine::Base::Runner::SHUTDOWN_GRACE (the server runs as a process here).
  def grace
    8
  end

  # Runs `cmd` (with `env`) in its own process group, killed after `timeout` seconds (a
  # command that should have failed but started serving ends there); [stdout, stderr, status].
  def capture(env, *cmd, chdir: ROOT, timeout: 10)
    Open3.popen3(env, *cmd, chdir: chdir, pgroup: true) do |stdin, out, err, waiter|
      stdin.close
      readers = [out, err].map { |io| Thread.new { io.read } }
      unless waiter.join(timeout)
        begin
          Process.kill("KILL", -waiter.pid)
        rescue Errno::ESRCH
          nil
        end
        waiter.join
      end
      [readers[0].value, readers[1].value, waiter.value]
    end
  end

  def iodine(*args, env: {}, chdir: ROOT, timeout: 10)
    capture(env, RbConfig.ruby, "-I#{ROOT}/lib", ServerProcess::EXE, *args, chdir: chdir, timeout: timeout)
  end

  def ruby_script(*args, env: {}, chdir: ROOT)
    capture(env, RbConfig.ruby, "-I#{ROOT}/lib", *args, chdir: chdir)
  end

  # A command-line mistake: exit 1, exactly one "Error: ..." line, and no Ruby backtrace.
  def expect_one_line_error(err, status, mentions)
    expect(status.exitstatus).to eq(1), "exit status #{status.inspect}; stderr:\n#{err}"
    expect(err.lines.grep(/\AError: /).size).to eq(1), "stderr:\n#{err}"
    expect(err.lines.grep(/\AError: /).first).to include(mentions)
    expect(err).not_to match(/^\s+from /)
    expect(err).not_to include(".rb:")
    expect(err).not_to include("Listening on")
  end

  # pid => [state, ppid] for every process (a zombie is dead: it only waits to be reaped).
  def process_table
    Dir.glob("/proc/[0-9]*/stat").each_with_object({}) do |path, table|
      fields = File.read(path).split(")").last.split
      table[File.basename(File.dirname(path)).to_i] = [fields[0], fields[1].to_i]
    rescue Errno::ENOENT, Errno::ESRCH
      next
    end
  end

  def children_of(pid)
    process_table.select { |_, (state, ppid)| ppid == pid && state != "Z" }.keys
  end

  def alive?(pid)
    state = File.read("/proc/#{pid}/stat").split(")").last.split.first
    state != "Z"
  rescue Errno::ENOENT, Errno::ESRCH
    false
  end

  def soft_open_files_limit(pid)
    File.read("/proc/#{pid}/limits")[/^Max open files\s+(\d+)/, 1].to_i
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # A config.ru with two autoloads (one top-level, one nested in a module) that leave a marker
  # (the loading pid) when loaded, and an app that records every request it sees
  # ("pid path warmup|client") in `requests`. `warmup_delay`: seconds the warmup GET / takes
  # before it is recorded (a slow first request, as an app's lazy setup would be).
  def write_warmup_app(dir, warmup_delay: 0)
    File.write(File.join(dir, "foo.rb"), <<~RUBY)
      File.write(#{File.join(dir, 'foo_loaded').inspect}, "\#{Process.pid}\\n", mode: "a")
      module LifecycleFoo; end
    RUBY
    File.write(File.join(dir, "inner.rb"), <<~RUBY)
      File.write(#{File.join(dir, 'inner_loaded').inspect}, "\#{Process.pid}\\n", mode: "a")
      module LifecycleOuter
        class Inner; end
      end
    RUBY
    path = File.join(dir, "app.ru")
    File.write(path, <<~RUBY)
      Object.autoload(:LifecycleFoo, #{File.join(dir, 'foo.rb').inspect})
      module LifecycleOuter
        autoload :Inner, #{File.join(dir, 'inner.rb').inspect}
      end
      REQUESTS = #{File.join(dir, 'requests').inspect}
      run(lambda do |env|
        # What this process still has to autoload (nil: already loaded).
        if env["PATH_INFO"] == "/autoloads"
          body = [Object.autoload?(:LifecycleFoo), LifecycleOuter.autoload?(:Inner)].inspect
          return [200, { "content-type" => "text/plain" }, [body]]
        end
        sleep #{warmup_delay} if env["iodine.warmup"]
        File.write(REQUESTS, "\#{Process.pid} \#{env['PATH_INFO']} \#{env['iodine.warmup'] ? 'warmup' : 'client'}\\n", mode: "a")
        [200, { "content-type" => "text/plain" }, ["pid \#{Process.pid}"]]
      end)
    RUBY
    path
  end

  # Waits (at most `seconds`) until the server's log has `text`; the log.
  def wait_for_log(server, text, seconds = 10)
    deadline = now + seconds
    sleep 0.05 until server.log.include?(text) || server.exited? || now > deadline
    server.log
  end

  def read_lines(path)
    File.exist?(path) ? File.read(path).lines.map(&:chomp) : []
  end

  describe "--preload (the -warmup alias), one process" do
    # One server for the examples below: `-p PORT --preload app.ru`, its warmup GET / slow (0.5 s).
    # What existed the moment its port first accepted is noted before any request is sent.
    before(:context) do
      @dir = Dir.mktmpdir
      app = write_warmup_app(@dir, warmup_delay: 0.5)
      @server = ServerProcess.new(["-t", "2", "-w", "1", "--preload", app])
      @at_accept = %w[foo_loaded inner_loaded requests].to_h { |f| [f, File.exist?(File.join(@dir, f))] }
      @first = http_get(@server.port, "/")
    end

    after(:context) do
      @server&.stop
      FileUtils.remove_entry(@dir) if @dir
    end

    it "parses --preload as the warmup flag (not -p \"reload\") and serves" do
      expect(@first.code).to eq("200")
      expect(@first.body).to eq("pid #{@server.pid}")
      expect(@server.log).not_to include("needs a number")
      expect(@server.log).not_to match(/^Error: /)
    end

    it "loads every autoloaded constant (nested ones too) and sends one GET / through the app before serving a client" do
      expect(read_lines(File.join(@dir, "foo_loaded"))).to eq([@server.pid.to_s])
      expect(read_lines(File.join(@dir, "inner_loaded"))).to eq([@server.pid.to_s])
      requests = read_lines(File.join(@dir, "requests"))
      expect(requests.first).to eq("#{@server.pid} / warmup")
      expect(requests.grep(/warmup\z/).size).to eq(1)
      expect(requests).to include("#{@server.pid} / client")
      expect(http_get(@server.port, "/autoloads").body).to eq("[nil, nil]")
    end

    it "logs what the warmup did: the autoloads loaded and the status of its GET /" do
      line = @server.log[/^.*Warmup: \d+ autoloaded constants loaded, GET \/ answered \d+ \(\d+ ms\)$/]
      expect(line).to start_with("INFO: ")
      loaded, status, ms = line.match(/Warmup: (\d+) .* answered (\d+) \((\d+) ms\)/).captures.map(&:to_i)
      expect(loaded).to be >= 2
      expect(status).to eq(200)
      expect(ms).to be >= 500 # the warmup GET / took 0.5 s
      expect(@server.log.index("Warmup:")).to be < @server.log.index("Starting up")
    end

    it "has finished the warmup (autoloads and GET /) by the time its port accepts a connection" do
      expect(@at_accept).to eq("foo_loaded" => true, "inner_loaded" => true, "requests" => true),
                            "when the port first accepted a connection, these existed: #{@at_accept.inspect} " \
                            "(the listening socket takes connections while the warmup still runs)"
    end

    it "prints the single-process banner: 1 worker, threads, max open files and its own pid" do
      banner = @server.log[/1 Worker X (\d+) Threads, max open files (\d+), pid (\d+)$/]
      expect(banner).not_to be_nil, @server.log
      threads, files, pid = Regexp.last_match.captures.map(&:to_i)
      expect(threads).to eq(2)
      expect(pid).to eq(@server.pid)
      expect(files).to eq(soft_open_files_limit(@server.pid))
    end
  end

  it "without -warmup loads no autoload and sends no request of its own" do
    Dir.mktmpdir do |dir|
      server = ServerProcess.new(["-t", "1", "-w", "1", write_warmup_app(dir)])
      begin
        expect(File.exist?(File.join(dir, "foo_loaded"))).to be(false)
        expect(File.exist?(File.join(dir, "inner_loaded"))).to be(false)
        expect(File.exist?(File.join(dir, "requests"))).to be(false)
        expect(http_get(server.port, "/autoloads").body).to eq([File.join(dir, "foo.rb"), File.join(dir, "inner.rb")].inspect)
        expect(server.log).not_to include("Warmup:")
      ensure
        server.stop
      end
    end
  end

  it "-preload in cluster mode (-w 2 -t 3): warms up once, in the master, before forking; banner names the master pid" do
    Dir.mktmpdir do |dir|
      server = ServerProcess.new(["-w", "2", "-t", "3", "-preload", write_warmup_app(dir)])
      begin
        # The port may accept during the warmup (the example above covers that): wait for the banner.
        banner = wait_for_log(server, "Listening on")[/2 Workers X 3 Threads per worker, max open files (\d+), master pid (\d+)$/]
        expect(banner).not_to be_nil, server.log
        files, master = Regexp.last_match.captures.map(&:to_i)
        expect(master).to eq(server.pid)
        expect(files).to eq(soft_open_files_limit(server.pid))
        # Clients are served by the workers, which inherited what the master loaded.
        bodies = Array.new(6) { http_get(server.port, "/autoloads").body }
        expect(bodies.uniq).to eq(["[nil, nil]"])
        served_by = Array.new(6) { http_get(server.port, "/").body }.uniq
        expect(served_by).not_to include("pid #{master}")
        expect(read_lines(File.join(dir, "foo_loaded"))).to eq([master.to_s])
        expect(read_lines(File.join(dir, "inner_loaded"))).to eq([master.to_s])
        expect(read_lines(File.join(dir, "requests")).grep(/warmup\z/)).to eq(["#{master} / warmup"])
        expect(server.log.scan(/Warmup: \d+ autoloaded constants loaded/).size).to eq(1)
        expect(server.log.index("Warmup:")).to be < server.log.index("Starting up")
        expect(server.log).not_to include("needs a number")
      ensure
        expect(server.stop("INT")&.exitstatus).to eq(0)
      end
    end
  end

  describe "bad ports" do
    [%w[-p -1], %w[-p abc], %w[-p 70000]].each do |flag, value|
      it "#{flag} #{value}: one 'Error:' line naming #{value}, exit 1, no random port" do
        _out, err, status = iodine(flag, value, "-b", "127.0.0.1", app_path("hello.ru"))
        expect_one_line_error(err, status, value)
      end
    end

    it "PORT=abc (no -p): one 'Error:' line, exit 1, no random port" do
      _out, err, status = iodine("-b", "127.0.0.1", app_path("hello.ru"), env: { "PORT" => "abc" })
      expect_one_line_error(err, status, "abc")
    end

    it "Iodine.listen raises ArgumentError for port \"abc\", and uses DEFAULT_SETTINGS[:port] (with a warning) for 70000" do
      Dir.mktmpdir do |dir|
        script = File.join(dir, "listen.rb")
        File.write(script, <<~RUBY)
          require "iodine"
          app = ->(_env) { [200, { "content-type" => "text/plain" }, ["served"]] }
          begin
            Iodine.listen(service: :http, handler: app, port: "abc", address: "127.0.0.1")
            warn "RESULT: no error"
          rescue ArgumentError => e
            warn "RESULT: ArgumentError \#{e.message}"
          end
          Iodine::DEFAULT_SETTINGS[:port] = ARGV[0]
          Iodine.listen(service: :http, handler: app, port: 70000, address: "127.0.0.1")
          Iodine.threads = 1
          Iodine.run_after(20_000) { Iodine.stop } # a bound, should the spec not stop it
          Iodine.start
        RUBY
        port = ServerProcess.free_port
        server = ServerProcess.new(nil, script: [script, port.to_s], port: port)
        begin
          expect(http_get(port, "/").body).to eq("served")
          expect(server.log_with("RESULT:")).to include("RESULT: ArgumentError").and include('"abc"')
          expect(server.log_with("port 70000")).to include("WARNING: port 70000 is out of range, using #{port}")
        ensure
          expect(server.stop&.exitstatus).to eq(0)
        end
      end
    end
  end

  describe "bad thread counts" do
    it "-t 5000: one 'Error:' line, exit 1, no backtrace" do
      _out, err, status = iodine("-t", "5000", "-p", ServerProcess.free_port.to_s, "-b", "127.0.0.1", app_path("hello.ru"))
      expect_one_line_error(err, status, "thread")
    end

    it "THREADS=5000: one 'Error:' line, exit 1, no backtrace" do
      _out, err, status = iodine("-p", ServerProcess.free_port.to_s, "-b", "127.0.0.1", app_path("hello.ru"),
                                 env: { "THREADS" => "5000" })
      expect_one_line_error(err, status, "thread")
    end

    it "THREADS=abc: one 'Error:' line naming THREADS and the value, exit 1, no backtrace" do
      _out, err, status = iodine("-p", ServerProcess.free_port.to_s, "-b", "127.0.0.1", app_path("hello.ru"),
                                 env: { "THREADS" => "abc" })
      expect_one_line_error(err, status, "abc")
      expect(err).to include("THREADS")
    end
  end

  it "a port already in use: a message naming 127.0.0.1:PORT (no Rust debug struct), non-zero exit" do
    taken = TCPServer.new("127.0.0.1", 0)
    port = taken.addr[1]
    out, err, status = iodine("-p", port.to_s, "-b", "127.0.0.1", "-w", "1", app_path("hello.ru"))
    output = out + err
    expect(status.success?).to be(false), output
    expect(status.exitstatus).not_to be_nil # an exit, not a crash by signal
    expect(output).to include("127.0.0.1:#{port}")
    expect(output).to match(/in use/i)
    expect(output).not_to include("Tcp {")
    expect(output).not_to include("Listening on")
  ensure
    taken&.close
  end

  describe "warnings go through the logger" do
    # A script using the deprecated :app option of Iodine.listen (and not starting).
    def deprecated_app_option(verbosity)
      Dir.mktmpdir do |dir|
        script = File.join(dir, "warn.rb")
        File.write(script, <<~RUBY)
          require "iodine"
          #{"Iodine.verbosity = #{verbosity}" if verbosity}
          Iodine.listen(service: :http, app: ->(_env) { [200, {}, ["ok"]] }, port: #{ServerProcess.free_port}, address: "127.0.0.1")
          warn "listened"
        RUBY
        ruby_script(script)
      end
    end

    it "prefixes them with WARNING: (the deprecated :app option of Iodine.listen)" do
      _out, err, status = deprecated_app_option(nil)
      expect(status.exitstatus).to eq(0), err
      expect(err.lines).to include("WARNING: Iodine.listen: the :app option is deprecated, use :handler\n")
      expect(err).to include("listened")
    end

    it "silences them below warning level (Iodine.verbosity = 2)" do
      _out, err, status = deprecated_app_option(2)
      expect(status.exitstatus).to eq(0), err
      expect(err).to include("listened")
      expect(err).not_to include("deprecated")
      expect(err).not_to include("WARNING")
    end

    it "silences them with -V 2 on the command line" do
      Dir.mktmpdir do |dir|
        conf = File.join(dir, "conf.rb")
        File.write(conf, "Iodine.on_shutdown { nil }\nwarn 'conf done'\nexit 0\n")
        _out, loud, loud_status = iodine("-C", conf, app_path("hello.ru"))
        _out, quiet, quiet_status = iodine("-V", "2", "-C", conf, app_path("hello.ru"))
        expect([loud_status.exitstatus, quiet_status.exitstatus]).to eq([0, 0])
        expect(loud).to match(/^WARNING: Iodine\.on_shutdown is deprecated/)
        expect(quiet).to include("conf done")
        expect(quiet).not_to include("WARNING")
      end
    end
  end

  it "-C conf.rb is required by any script that sets IODINE_PARSE_CLI before require 'iodine'" do
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, "conf.rb"), "LIFECYCLE_CONF = \"conf.rb loaded\"\n")
      File.write(File.join(dir, "script.rb"), <<~RUBY)
        IODINE_PARSE_CLI = true
        require "iodine"
        puts(defined?(LIFECYCLE_CONF) ? LIFECYCLE_CONF : "no conf")
      RUBY
      out, err, status = ruby_script("script.rb", "-C", "conf.rb", chdir: dir)
      expect(status.exitstatus).to eq(0), err
      expect(out).to eq("conf.rb loaded\n")
      out, err, status = ruby_script("script.rb", chdir: dir)
      expect(status.exitstatus).to eq(0), err
      expect(out).to eq("no conf\n")
    end
  end

  describe "require 'iodine' and Rack" do
    it "does not define ::Rack, but defines Iodine::Rack" do
      out, err, status = ruby_script("-e", 'require "iodine"; p defined?(Rack); p defined?(Iodine::Rack)')
      expect(status.exitstatus).to eq(0), err
      expect(out.lines.map(&:chomp)).to eq(["nil", '"constant"'])
    end

    {
      "iodine, then rack" => 'require "iodine"; require "rack"',
      "rack, then iodine" => 'require "rack"; require "iodine"',
      "rack and rack/handler, then iodine" => 'require "rack"; require "rack/handler"; require "iodine"'
    }.each do |order, requires|
      it "Rack::Handler.get finds Iodine::Rack as \"iodine\" and \"Iodine\" (#{order}), Rack::VERSION intact" do
        code = "#{requires}; p Rack::VERSION; p Rack::Handler.get(\"Iodine\").equal?(Iodine::Rack); " \
               "p Rack::Handler.get(\"iodine\").equal?(Iodine::Rack)"
        out, err, status = ruby_script("-e", code)
        expect(status.exitstatus).to eq(0), err
        expect(out.lines.map(&:chomp)).to eq(["[1, 3]", "true", "true"])
      end
    end
  end

  describe "a cluster (-w 2 -t 2) stopping with requests stuck in the app" do
    around do |example|
      Dir.mktmpdir do |dir|
        @app = File.join(dir, "stuck.ru")
        File.write(@app, <<~RUBY)
          run(lambda do |env|
            sleep 120 if env["PATH_INFO"] == "/stuck"
            [200, { "content-type" => "text/plain" }, ["ok"]]
          end)
        RUBY
        example.run
      ensure
        @clients&.each(&:kill)
        @stuck&.each(&:close)
        @server&.stop("KILL")
        @workers&.each do |pid|
          Process.kill("KILL", pid) if alive?(pid)
        rescue Errno::ESRCH
          nil
        end
      end
    end

    # Starts the cluster, waits for both workers to serve, gets two requests stuck; the worker pids.
    def stuck_cluster
      @server = ServerProcess.new(["-w", "2", "-t", "2", @app])
      deadline = now + 10
      sleep 0.05 until children_of(@server.pid).size >= 2 || now > deadline
      workers = @workers = children_of(@server.pid)
      expect(workers.size).to eq(2)
      expect(http_get(@server.port, "/").body).to eq("ok")
      @stuck = Array.new(2) do
        TCPSocket.new("127.0.0.1", @server.port).tap { |s| s.write("GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n") }
      end
      sleep 0.5
      expect(workers.all? { |pid| alive?(pid) }).to be(true)
      workers
    end

    it "a second INT makes the master exit at once, non-zero, leaving no worker alive" do
      workers = stuck_cluster
      @server.signal("INT")
      sleep 0.5
      started = now
      @server.signal("INT")
      status = @server.wait(grace + 6)
      took = now - started
      expect(status).not_to be_nil
      expect(took).to be < 1.0
      expect(status.success?).to be(false)
      deadline = now + 2
      sleep 0.05 until workers.none? { |pid| alive?(pid) } || now > deadline
      expect(workers.select { |pid| alive?(pid) }).to eq([])
    end

    it "a single INT stops it within the grace period (plus the cluster's margin), exit 0, no worker left" do
      workers = stuck_cluster
      started = now
      @server.signal("INT")
      status = @server.wait(grace + 6)
      took = now - started
      expect(status&.exitstatus).to eq(0), @server.log
      expect(took).to be < grace + 2 + 2
      expect(workers.select { |pid| alive?(pid) }).to eq([])
      expect(@server.log).to include("Shutdown Complete")
    end
  end
end
