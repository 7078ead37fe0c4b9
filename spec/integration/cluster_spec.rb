# frozen_string_literal: true

require "spec_helper"
require "set"
require "open3"
require_relative "../support/realtime"
require_relative "../support/process_tree"

# Cluster mode (api.md §1.2 master?/worker?/stop, §1.5, §6.4, §6.5, §10.5, §11): `-w 2`
# makes the master fork two workers that serve the listeners; pub/sub crosses processes
# through the master; signals and crashes replace workers; lifecycle events fire in the right
# processes. The app is spec/support/apps/cluster.ru (every answer names its worker's pid;
# with CLUSTER_EVENTS=FILE each process appends "PID EVENT" lines to FILE), plus
# spec/support/apps/cluster_sequel.rb for the fork protection and
# spec/support/cluster_fleet.py for 1,000 WebSocket subscribers. SHOW_RESULTS=1 prints what
# wrk and the fleet reported.
module ClusterHelpers
  FLEET = File.join(ROOT, "spec", "support", "cluster_fleet.py")
  LIFECYCLE = /\A(\w+) master=(true|false) worker=(true|false)\z/
  # The first subscriber of a channel in a worker is in the master's routing table only once
  # the worker told the master (asynchronously; see the race example): the delivery examples
  # wait this long after their subscribers arrived, so that they test delivery, not the race.
  SETTLE = 0.3
  # Subscribers the race example tries at most (each published to at once from the other
  # worker; a try takes about a millisecond), and for how long at most.
  RACE_ATTEMPTS = 2000
  RACE_SECONDS = 15
  # What `burst` and `pid_once` ask on each connection (and then read to its end).
  PID_REQUEST = "GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

  # now, proc_stat, alive? and children, for the examples.
  include ProcessTree
end

RSpec.describe "cluster mode (-w 2)" do
  include RealtimeHelpers
  include ClusterHelpers

  def start_cluster(events: nil, args: [], workers: 2, env: {})
    env = events ? env.merge("CLUSTER_EVENTS" => events) : env
    server = ServerProcess.new(["-w", workers.to_s, "-t", "2", *args, app_path("cluster.ru")], env: env)
    (@servers ||= []) << server
    server
  end

  # A fresh events file, deleted after the example (after its servers stopped).
  def events_path
    path = File.join(Dir.tmpdir, "iodine-cluster-events-#{Process.pid}-#{SecureRandom.hex(4)}.log")
    (@event_files ||= []) << path
    path
  end

  # [[pid, text], ...] as the processes appended them to `path`.
  def event_lines(path)
    return [] unless File.exist?(path)

    File.readlines(path, chomp: true).map do |line|
      pid, text = line.split(" ", 2)
      [pid.to_i, text]
    end
  end

  # The lifecycle events of `pid`: [[event, master?, worker?], ...] in order.
  def lifecycle_of(lines, pid)
    lines.filter_map do |who, text|
      next unless who == pid && (m = ClusterHelpers::LIFECYCLE.match(text))

      [m[1], m[2] == "true", m[3] == "true"]
    end
  end

  # GET /pid on fresh connections until `count` different workers answered (or every pid in
  # `including` did); the Set of pids that answered. Bounded by `seconds`.
  def answering_pids(port, count: 2, including: nil, seconds: 20)
    seen = Set.new
    deadline = now + seconds
    until (including ? including.to_set.subset?(seen) : seen.size >= count) || now > deadline
      response = http_get(port, "/pid")
      seen << response.body.to_i if response.code == "200"
    end
    seen
  end

  # Raw WebSocket clients on `path`, opened until `workers` different pids greeted them (at
  # most `max` clients); [[client, pid], ...].
  def clients_on_every_worker(port, path, workers: 2, max: 40)
    clients = []
    until clients.map(&:last).uniq.size >= workers
      raise "#{max} WebSocket clients all landed on #{clients.map(&:last).uniq}" if clients.size >= max

      ws = open_ws(port, path)
      raise "the upgrade of #{path} failed: #{ws.head}" unless ws.upgraded?

      kind, greeting = ws.read_message(10)
      raise "no pid greeting, got #{kind.inspect} #{greeting.inspect}" unless greeting.to_s =~ /\Apid:(\d+)\z/

      clients << [ws, Regexp.last_match(1).to_i]
    end
    clients
  end

  # WebSocket subscribers on every worker of the server on `port`; one on each worker
  # publishes 3 messages: every subscriber gets all of them.
  def expect_delivery_across_workers(port)
    channel = unique_id("across")
    clients = clients_on_every_worker(port, "/ws?sub=#{channel}")
    sleep ClusterHelpers::SETTLE
    publishers = clients.to_h { |ws, pid| [pid, ws] }
    publishers.each { |pid, ws| ws.text("pubn #{channel} from#{pid}- 3") }
    expected = publishers.keys.flat_map { |pid| Array.new(3) { |i| "from#{pid}-#{i}" } }
    clients.each do |ws, pid|
      expect(ws.messages(expected.size, 10).sort).to eq(expected.sort), "subscriber on worker #{pid}"
    end
  ensure
    clients&.each { |ws, _| ws.close_socket }
  end

  # Opens `count` TCP connections to `port` at once (each connect_nonblock right after the
  # other), then asks each which worker it landed on: GET /pid (`kind: :http`) or the raw
  # listener's greeting (`:raw`). [pids, failures], one entry per connection; every read is
  # bounded by `seconds` in all.
  def burst(port, count, kind: :http, seconds: 20)
    sockets, failures = open_burst(port, count, kind: kind)
    pids, more = read_burst(sockets, kind: kind, seconds: seconds)
    [pids, failures + more]
  end

  # The first half of `burst`: [sockets, failures] (GET /pid sent on each for `kind: :http`).
  def open_burst(port, count, kind: :http)
    address = Socket.sockaddr_in(port, "127.0.0.1")
    failures = []
    sockets = Array.new(count).filter_map do
      socket = Socket.new(:INET, :STREAM)
      begin
        socket.connect_nonblock(address)
      rescue IO::WaitWritable
        raise Errno::ETIMEDOUT, "connect" unless socket.wait_writable(5)

        begin
          socket.connect_nonblock(address)
        rescue Errno::EISCONN
          nil
        end
      end
      socket
    rescue SystemCallError => e
      failures << "connect: #{e.class}: #{e.message}"
      socket.close
      nil
    end
    return [sockets, failures] unless kind == :http

    sent = sockets.select do |socket|
      socket.write(ClusterHelpers::PID_REQUEST)
    rescue SystemCallError, IOError => e
      failures << "write: #{e.class}: #{e.message}"
      socket.close
      false
    end
    [sent, failures]
  end

  # The second half of `burst`: [pids, failures]; closes the sockets.
  def read_burst(sockets, kind: :http, seconds: 20)
    deadline = now + seconds
    failures = []
    pids = sockets.filter_map do |socket|
      pid, failure = read_pid(socket, kind, [deadline - now, 0.1].max)
      failures << failure if failure
      pid
    ensure
      socket.close
    end
    [pids, failures]
  end

  # The pid a connection's answer names (HTTP or raw), or [nil, what went wrong].
  def read_pid(socket, kind, seconds)
    if kind == :raw
      out, = read_for(socket, seconds) { |bytes| bytes.include?("\n") }
      return [Regexp.last_match(1).to_i, nil] if out =~ /\Apid:(\d+)\n/

      return [nil, "raw: #{out.inspect}"]
    end
    out, closed = read_for(socket, seconds)
    return [out.split("\r\n\r\n", 2).last.to_i, nil] if closed && out.start_with?("HTTP/1.1 200 ") && out =~ /\r\n\r\n\d+\z/

    [nil, "http: #{out.inspect} (#{closed ? 'closed' : 'not closed'})"]
  rescue SystemCallError, IOError => e
    [nil, "#{kind}: #{e.class}: #{e.message}"]
  end

  # GET /pid on a new connection to `port` (or the Unix socket `path`): [pid, failure].
  def pid_once(port: nil, path: nil)
    socket = path ? UNIXSocket.new(path) : TCPSocket.new("127.0.0.1", port)
    socket.write(ClusterHelpers::PID_REQUEST)
    read_pid(socket, :http, 10)
  rescue SystemCallError, IOError => e
    [nil, "connect: #{e.class}: #{e.message}"]
  ensure
    socket&.close
  end

  # Runs a command with a bound; [stdout+stderr, status].
  def run_bounded(command, seconds)
    Open3.popen2e(*command) do |stdin, out, wait|
      stdin.close
      reader = Thread.new { out.read }
      unless wait.join(seconds)
        Process.kill("KILL", wait.pid)
        wait.join
        raise "#{command.first} still running after #{seconds}s: #{reader.value}"
      end
      [reader.value, wait.value]
    end
  end

  # Remembers the workers of every server started, so that none outlives the example.
  def track_workers(server)
    (@workers_seen ||= Set.new).merge(children(server.pid))
  end

  after do
    (@servers || []).each do |server|
      track_workers(server) unless server.exited?
      server.stop
    end
    leftovers = (@workers_seen || []).select { |pid| alive?(pid) }
    eventually(5) { leftovers.none? { |pid| alive?(pid) } }
    leftovers.each do |pid|
      Process.kill("KILL", pid) if alive?(pid)
    rescue Errno::ESRCH
      nil
    end
    (@event_files || []).each { |path| File.delete(path) if File.exist?(path) && ENV["KEEP_LOGS"].nil? }
    @servers = nil
    @workers_seen = nil
    @event_files = nil
  end

  describe "pub/sub across the workers" do
    before(:all) do
      @events = File.join(Dir.tmpdir, "iodine-cluster-events-#{Process.pid}-shared.log")
      File.delete(@events) if File.exist?(@events)
      @shared = ServerProcess.new(["-w", "2", "-t", "2", File.join(ServerProcess::APPS, "cluster.ru")],
                                  env: { "CLUSTER_EVENTS" => @events })
      @master = @shared.pid
    end

    after(:all) do
      workers = ProcessTree.children(@master)
      @shared&.stop
      workers.each { |pid| Process.kill("KILL", pid) if ProcessTree.alive?(pid) }
      File.delete(@events) if @events && File.exist?(@events) && ENV["KEEP_LOGS"].nil?
    end

    let(:port) { @shared.port }

    # Both workers, by their answers to HTTP.
    def workers
      @workers ||= begin
        pids = answering_pids(port, count: 2)
        expect(pids.size).to eq(2), "only #{pids.to_a} answered GET /pid in 20 s"
        expect(pids.to_a.sort).to eq(ProcessTree.children(@master))
        pids.to_a.sort
      end
    end

    # GET /pub with `query` on fresh connections until every worker has published once
    # (`make_query` gets the attempt's number); [[query, publishing pid], ...] in order.
    def publish_from_every_worker(make_query, max: 40)
      done = []
      until workers.all? { |pid| done.any? { |_, by| by == pid } }
        raise "#{max} publishes all went to #{done.map(&:last).uniq}" if done.size >= max

        query = make_query.call(done.size)
        response = http_get(port, "/pub?#{URI.encode_www_form(query)}")
        expect(response.code).to eq("200")
        done << [query, response.body.to_i]
      end
      done
    end

    it "delivers a message published in either worker to the WebSocket subscribers on both workers" do
      channel = unique_id("both")
      clients = clients_on_every_worker(port, "/ws?sub=#{channel}")
      expect(clients.map(&:last).uniq.sort).to eq(workers)
      sleep ClusterHelpers::SETTLE
      published = publish_from_every_worker(->(i) { { ch: channel, msg: "m#{i}" } })
      expected = published.map { |query, _| query[:msg] }
      clients.each do |ws, pid|
        got = ws.messages(expected.size, 10)
        expect(got.sort).to eq(expected.sort), "client on worker #{pid}"
        # Each publisher's messages keep their order.
        workers.each do |publisher|
          mine = published.select { |_, by| by == publisher }.map { |query, _| query[:msg] }
          expect(got & mine).to eq(mine), "client on #{pid}, messages of #{publisher}"
        end
        expect(ws.read_message(0.3)).to be_nil
      end
    ensure
      clients&.each { |ws, _| ws.close_socket }
    end

    it "a subscription made in on_open already reaches across workers when the client hears back " \
       "(subscribe, greet, then a publish from the other worker)" do
      opened = clients_on_every_worker(port, "/ws")
      publishers = opened.to_h { |ws, pid| [pid, ws] }
      outcomes = []
      missed = []
      # The race is lost by a few tries in a thousand on an idle machine (far more under CPU
      # load), so many tries; stops at the 3rd miss: that is enough to tell, and each costs a wait.
      give_up = now + ClusterHelpers::RACE_SECONDS
      while outcomes.size < ClusterHelpers::RACE_ATTEMPTS && missed.size < 3 && now < give_up
        channel = unique_id("race")
        outcome = open_ws(port, "/ws?sub=#{channel}") do |ws|
          _, greeting = ws.read_message(10)
          pid = greeting.to_s[/\d+/].to_i
          other = publishers.find { |by, _| by != pid }.last
          other.text("pubn #{channel} first 1")
          _, got = ws.read_message(0.5)
          unless got
            # Lost or only late? A second message, published when the subscription is surely
            # known to the master, tells: a late first one still comes before it.
            sleep 0.1
            other.text("pubn #{channel} second 1")
            _, got = ws.read_message(5)
          end
          [pid, got]
        end
        outcomes << outcome
        missed << outcome unless outcome.last == "first0"
      end
      expect(missed).to be_empty,
                        "#{missed.size} of #{outcomes.size} subscribers missed the first message published from " \
                        "the other worker right after their subscription (subscriber's worker: what came first " \
                        "instead: #{missed.map { |pid, got| "#{pid}: #{got.inspect}" }.join(', ')})"
    ensure
      opened&.each { |ws, _| ws.close_socket }
    end

    it "match: :redis patterns match channels published from either worker, on both workers" do
      base = unique_id("pat")
      clients = clients_on_every_worker(port, "/ws?#{URI.encode_www_form(pat: "#{base}.*", sub: "#{base}-end")}")
      sleep ClusterHelpers::SETTLE
      published = publish_from_every_worker(->(i) { { ch: "#{base}.#{i.even? ? 'news' : 'sport'}", msg: "p#{i}" } })
      http_get(port, "/pub?#{URI.encode_www_form(ch: "#{base}X.news", msg: 'no: another prefix')}")
      http_get(port, "/pub?#{URI.encode_www_form(ch: base, msg: 'no: the dot is missing')}")
      expected = published.map { |query, _| query[:msg] }
      clients.each do |ws, pid|
        expect(ws.messages(expected.size, 10).sort).to eq(expected.sort), "client on worker #{pid}"
      end
      # The non-matching ones never come: the end marker (published after them from both
      # workers) is what arrives next.
      publish_from_every_worker(->(_) { { ch: "#{base}-end", msg: "end" } }).size.then do |ends|
        clients.each do |ws, pid|
          expect(ws.messages(ends, 10).uniq).to eq(["end"]), "client on worker #{pid}"
          expect(ws.read_message(0.3)).to be_nil
        end
      end
    ensure
      clients&.each { |ws, _| ws.close_socket }
    end

    it "subscribe(as: :binary) delivers binary frames with every byte, whichever worker published" do
      channel = unique_id("bin")
      clients = clients_on_every_worker(port, "/ws?bin=#{channel}")
      sleep ClusterHelpers::SETTLE
      payload = ->(i) { "\x00\xFF\r\n#{i}\x80".b + (0..255).to_a.pack("C*") }
      published = publish_from_every_worker(->(i) { { ch: channel, msg: payload.call(i).unpack1("H*"), hex: 1 } })
      expected = Array.new(published.size) { |i| [:binary, payload.call(i)] }
      clients.each do |ws, pid|
        got = Array.new(expected.size) { ws.read_message(10) || [:timeout, ""] }
        expect(got.sort).to eq(expected.sort), "client on worker #{pid}"
      end
    ensure
      clients&.each { |ws, _| ws.close_socket }
    end

    it "1,000 WebSocket subscribers spread over both workers each get every message of two publishers, " \
       "each publisher's in order" do
      channel = unique_id("fleet")
      request = { url: ws_url(port, "/ws?sub=#{channel}"), channel: channel, clients: 1000, count: 20,
                  timeout: 90, connect_parallel: 50 }
      result = nil
      Open3.popen3(RealtimeHelpers.python, ClusterHelpers::FLEET) do |stdin, stdout, stderr, wait|
        out = Thread.new { stdout.read }
        err = Thread.new { stderr.read }
        stdin.write(JSON.generate(request))
        stdin.close
        unless wait.join(120)
          Process.kill("KILL", wait.pid)
          wait.join
          raise "cluster_fleet.py still running after 120 s: #{err.value}"
        end
        raise "cluster_fleet.py failed: #{err.value}" unless wait.value.success?

        result = JSON.parse(out.value.lines.last)
      end
      warn "cluster_fleet.py: #{JSON.generate(result)}" if ENV["SHOW_RESULTS"]
      expect(result["connected"]).to eq(1000), result.inspect
      expect(result["pids"].keys.map(&:to_i).sort).to eq(workers), "clients per worker: #{result['pids']}"
      expect(result["publishers"].size).to eq(2)
      expect(result["failures"]).to eq([])
      expect(result["ok"]).to eq(1000), result.inspect
    end

    describe "engines and the master's own subscriptions" do
      # Who logged "got TAG" (the "engines" channel has an Iodine.subscribe block in every
      # process), as a sorted pid list, once `want` pids did (then a moment more for extras).
      def receivers(tag, want)
        line = "got #{tag}"
        eventually(10) { event_lines(@events).count { |_, text| text == line } >= want }
        sleep 0.4
        event_lines(@events).select { |_, text| text == line }.map(&:first).sort
      end

      # Publishes TAG to "engines" from one worker (whichever answers); its pid.
      def publish_in_a_worker(tag, engine)
        query = { ch: "engines", msg: tag }
        query[:engine] = engine if engine
        response = http_get(port, "/pub?#{URI.encode_www_form(query)}")
        expect(response.code).to eq("200")
        response.body.to_i
      end

      # [engine parameter, name, who it reaches, the pids it reaches (master, workers, publisher)]
      [
        [nil, "the default engine (CLUSTER)", "every process", ->(m, ws, _by) { [m, *ws] }],
        ["cluster", "CLUSTER", "every process", ->(m, ws, _by) { [m, *ws] }],
        ["siblings", "SIBLINGS", "every other process (the master included)", ->(m, ws, by) { [m, *(ws - [by])] }],
        ["root", "PUBLISH2ROOT", "the master only", ->(m, _ws, _by) { [m] }],
        ["process", "PROCESS", "the publishing worker only", ->(_m, _ws, by) { [by] }]
      ].each do |engine, name, who, reach|
        it "from a worker, #{name} reaches #{who}" do
          tag = unique_id("w-#{engine || 'default'}")
          by = publish_in_a_worker(tag, engine)
          expect(workers).to include(by)
          want = reach.call(@master, workers, by).sort
          expect(receivers(tag, want.size)).to eq(want)
        end
      end

      [
        ["cluster", "CLUSTER", "every process", ->(m, ws) { [m, *ws] }],
        ["siblings", "SIBLINGS", "both workers, not the master", ->(_m, ws) { ws }],
        ["root", "PUBLISH2ROOT", "the master only", ->(m, _ws) { [m] }],
        ["process", "PROCESS", "the master only", ->(m, _ws) { [m] }]
      ].each do |engine, name, who, reach|
        it "the master's Iodine.subscribe block gets a worker's publish (once, in the master); " \
           "its own publish with #{name} reaches #{who}" do
          tag = unique_id("m-#{engine}")
          message = "#{tag} #{engine}"
          response = http_get(port, "/pub?#{URI.encode_www_form(ch: 'relay', msg: message)}")
          expect(workers).to include(response.body.to_i)
          want = reach.call(@master, workers).sort
          expect(receivers(tag, want.size)).to eq(want)
          relayed = event_lines(@events).select { |_, text| text == "master got #{message}" }
          expect(relayed).to eq([[@master, "master got #{message}"]])
        end
      end

      it "answers master? false and worker? true in a worker's request handler" do
        whoami = Array.new(8) { http_get(port, "/whoami").body }.uniq
        whoami.each do |line|
          pid, flags = line.split(" ", 2)
          expect(workers).to include(pid.to_i)
          expect(flags).to eq("master=false worker=true")
        end
      end
    end
  end

  describe "lifecycle events" do
    before(:all) do
      @events = File.join(Dir.tmpdir, "iodine-cluster-events-#{Process.pid}-lifecycle.log")
      File.delete(@events) if File.exist?(@events)
      server = ServerProcess.new(["-w", "2", "-t", "2", File.join(ServerProcess::APPS, "cluster.ru")],
                                 env: { "CLUSTER_EVENTS" => @events })
      @master = server.pid
      @answered = answering_pids(server.port, count: 2).to_a.sort
      @children = ProcessTree.children(@master)
      server.signal("TERM")
      @status = server.wait(30)
      @log = server.log
      server.stop
      @lines = event_lines(@events)
    ensure
      (@children || []).each { |pid| Process.kill("KILL", pid) if ProcessTree.alive?(pid) }
    end

    after(:all) { File.delete(@events) if @events && File.exist?(@events) && ENV["KEEP_LOGS"].nil? }

    it "the cluster came up with two serving workers and exited 0 on TERM" do
      expect(@answered.size).to eq(2), @log
      expect(@answered).to eq(@children)
      expect(@status&.exitstatus).to eq(0), "status #{@status.inspect}\n#{@log}"
    end

    it "the master runs pre_start once, before_fork/after_fork/enter_master per fork, then start_shutdown " \
       "and on_finish (never on_start or enter_child)" do
      events = lifecycle_of(@lines, @master).map(&:first)
      expect(events).to eq(%w[pre_start before_fork after_fork enter_master before_fork after_fork enter_master
                              start_shutdown on_finish])
    end

    it "each worker runs after_fork, enter_child, on_start, then start_shutdown and on_finish" do
      workers = @lines.map(&:first).uniq - [@master]
      expect(workers.sort).to eq(@answered)
      workers.each do |pid|
        expect(lifecycle_of(@lines, pid).map(&:first)).to eq(%w[after_fork enter_child on_start start_shutdown
                                                                  on_finish]), "worker #{pid}"
      end
    end

    it "master? is true and worker? false in every master event; the reverse in every worker event " \
       "(after_fork and enter_child included, as the C gem set them before those callbacks)" do
      wrong = @lines.filter_map do |pid, text|
        m = ClusterHelpers::LIFECYCLE.match(text) or next
        want = pid == @master ? %w[true false] : %w[false true]
        "#{pid == @master ? 'master' : "worker #{pid}"} #{text}" unless [m[2], m[3]] == want
      end
      expect(wrong).to eq([])
    end
  end

  it "USR1 under wrk load replaces both workers one by one: no non-2xx answer, no socket error; " \
     "pub/sub crosses the new workers" do
    server = start_cluster
    before = answering_pids(server.port, count: 2)
    expect(before.size).to eq(2), server.log
    expect(children(server.pid)).to eq(before.to_a.sort)
    track_workers(server)

    # Watches the master's children while wrk runs: when were both old workers gone, and how
    # many workers were there at least and at most (one by one, new first: 2 to 3)?
    watching = true
    gone_at = nil
    seen = Set.new
    counts = []
    started = now
    watcher = Thread.new do
      while watching
        kids = children(server.pid)
        seen.merge(kids)
        counts << kids.size
        gone_at ||= now - started if (kids & before.to_a).empty?
        sleep 0.01
      end
    end
    signaller = Thread.new do
      sleep 2
      server.signal("USR1")
    end
    out, status = run_bounded(["wrk", "-t", "2", "-c", "16", "-d", "6s", "--timeout", "5s",
                               "http://127.0.0.1:#{server.port}/pid"], 40)
    wrk_seconds = now - started
    warn "wrk (old workers gone at #{gone_at&.round(2)} s):\n#{out}" if ENV["SHOW_RESULTS"]
    signaller.join
    watching = false
    watcher.join(5)
    (@workers_seen ||= Set.new).merge(seen)

    expect(status.success?).to be(true), out
    requests = out[/(\d+) requests in/, 1].to_i
    expect(requests).to be > 100, out
    expect(out).not_to match(/Socket errors/), out
    expect(out).not_to match(/Non-2xx/), out
    expect(gone_at).not_to be_nil, "the old workers #{before.to_a} were still there after wrk\n#{server.log}"
    expect(gone_at).to be < wrk_seconds, "the old workers left after wrk ended (#{gone_at.round(2)} s)"
    expect(counts.min).to eq(2), "workers alive at once during the restart: #{counts.tally}"
    expect(counts.max).to be <= 3, "workers alive at once during the restart: #{counts.tally}"

    after = children(server.pid)
    expect(after.size).to eq(2)
    expect(after & before.to_a).to eq([])
    expect(answering_pids(server.port, including: after, seconds: 10).to_a.sort).to eq(after)
    expect(server.log.scan(/worker (\d+) replaced/).flatten.map(&:to_i).sort).to eq(before.to_a.sort)
    # The new workers are in the pub/sub routing.
    expect_delivery_across_workers(server.port)
  end

  describe "spreading new connections over the workers" do
    it "-w 4: every burst of 400 connections, HTTP or raw TCP, gives each worker at least 15 % of it " \
       "(one socket per worker: the kernel hashes connections over them)" do
      raw_port = ServerProcess.free_port
      server = start_cluster(workers: 4, env: { "CLUSTER_RAW" => raw_port.to_s })
      workers = answering_pids(server.port, count: 4).to_a.sort
      expect(workers).to eq(children(server.pid)), server.log
      track_workers(server)
      shares = [[server.port, :http], [raw_port, :raw]] * 2
      shares.each do |port, kind|
        pids, failures = burst(port, 400, kind: kind)
        expect(failures).to eq([]), "#{kind}: #{failures.first(5)}"
        tally = pids.tally
        warn "#{kind} burst: #{tally.values.sort}" if ENV["SHOW_RESULTS"]
        expect(tally.keys.sort).to eq(workers), "#{kind}: #{tally}"
        # Each worker's share is about 100 (a standard deviation of 9); sharing one socket,
        # the least busy worker got 2 to 20 % of such bursts.
        expect(tally.values.min).to be >= 60, "#{kind}: #{tally.values.sort} of 400"
      end
    end

    it "USR1 while new connections keep coming (one by one and in bursts of 50, over TCP and over a Unix " \
       "socket the workers share): every one is answered, by the old workers and then by the new" do
      path = File.join(Dir.tmpdir, "iodine-cluster-#{Process.pid}-#{SecureRandom.hex(4)}.sock")
      server = start_cluster(env: { "CLUSTER_UNIX" => path })
      before = answering_pids(server.port, count: 2).to_a
      expect(before.size).to eq(2), server.log
      track_workers(server)
      answers = Queue.new
      failures = Queue.new
      running = true
      record = lambda do |pid, failure|
        answers << pid if pid
        failures << failure if failure
      end
      clients = [
        Thread.new { record.call(*pid_once(port: server.port)) while running },
        Thread.new { record.call(*pid_once(port: server.port)) while running },
        Thread.new { record.call(*pid_once(path: path)) while running },
        Thread.new do
          while running
            pids, errors = burst(server.port, 50)
            pids.each { |pid| answers << pid }
            errors.each { |error| failures << "burst #{error}" }
          end
        end
      ]
      sleep 0.5
      server.signal("USR1")
      replaced = wait_until(20) do
        (kids = children(server.pid)).size == 2 && (kids & before).empty?
      end
      sleep 1 # the new workers under the same load
      running = false
      stuck = clients.reject { |thread| thread.join(30) }
      clients.each(&:kill)
      track_workers(server)
      answered = Array.new(answers.size) { answers.pop }
      failed = Array.new(failures.size) { failures.pop }
      after = children(server.pid)
      warn "USR1 under new connections: #{answered.tally} (old #{before}), #{failed.size} failed" if ENV["SHOW_RESULTS"]

      expect(stuck).to eq([])
      expect(replaced).to be_truthy, "the old workers #{before} were not replaced\n#{server.log}"
      expect(failed).to eq([]), "#{failed.size} of #{failed.size + answered.size} failed: #{failed.first(5)}"
      expect(answered.size).to be > 500
      expect(answered.tally.keys - before - after).to eq([]), answered.tally.to_s
      expect(answered & before).to match_array(before)
      expect(answered & after).to match_array(after)
      expect(server.log.scan(/worker (\d+) replaced/).flatten.map(&:to_i).sort).to eq(before.sort)
    end
  end

  it "a worker that dies with connections waiting in its queue (SIGSTOP, a burst, kill -9): every one of " \
     "them is answered, by the other worker or the replacement (its socket stays open in the master)" do
    server = start_cluster
    victim, survivor = answering_pids(server.port, count: 2).to_a
    expect(survivor).not_to be_nil, server.log
    track_workers(server)
    Process.kill("STOP", victim)
    begin
      # Every thread stopped: none is still about to accept a connection of the burst.
      stopped = wait_until(5, 0.001) do
        Dir.children("/proc/#{victim}/task").all? { |task| proc_stat("#{victim}/task/#{task}")&.first == "T" }
      end
      expect(stopped).to be_truthy
      sockets, failures = open_burst(server.port, 100)
      Process.kill("KILL", victim)
    ensure
      Process.kill("CONT", victim) if alive?(victim)
    end
    pids, more = read_burst(sockets)
    failures += more
    track_workers(server)
    expect(failures).to eq([]), "#{failures.size} of 100 failed: #{failures.first(5)}"
    expect(pids.size).to eq(100)
    expect(pids).not_to include(victim)
    expect(pids.uniq - children(server.pid)).to eq([])
  end

  it "kill -9 of a worker: logged, on_child_crush runs in the master, a new worker serves within 2 s, " \
     "every request meanwhile succeeds, pub/sub reaches the new worker" do
    events = events_path
    server = start_cluster(events: events)
    pids = answering_pids(server.port, count: 2)
    expect(pids.size).to eq(2), server.log
    track_workers(server)
    victim, survivor = pids.to_a
    killed_at = now
    Process.kill("KILL", victim)
    answers = []
    failures = []
    newcomer = nil
    while newcomer.nil? && now - killed_at < 2
      begin
        response = http_get(server.port, "/pid")
        answers << [response.code, response.body.to_i]
        pid = response.body.to_i
        newcomer = pid unless pids.include?(pid)
      rescue StandardError => e
        failures << "#{e.class}: #{e.message}"
      end
    end
    track_workers(server)
    expect(newcomer).not_to be_nil, "no new worker answered within 2 s; answers: #{answers.last(5)}\n#{server.log}"
    expect(failures).to eq([])
    expect(answers.map(&:first).uniq).to eq(["200"])
    expect(answers.map(&:last).uniq - [survivor, newcomer]).to eq([])
    expect(children(server.pid)).to eq([survivor, newcomer].sort)
    crash_line = "Child worker (#{victim}) crashed. Respawning worker."
    expect(eventually(5) { server.log.include?(crash_line) }).to be(true), server.log
    crushes = eventually(5) { (l = event_lines(events).select { |_, t| t.start_with?("on_child_crush ") }).any? && l }
    expect(crushes.map(&:first)).to eq([server.pid])
    # The new worker is in the pub/sub routing.
    expect_delivery_across_workers(server.port)
  end

  it "Iodine.stop inside a worker ends only that worker: it shuts down cleanly, a new one replaces it, " \
     "the master stays up" do
    events = events_path
    server = start_cluster(events: events)
    pids = answering_pids(server.port, count: 2)
    expect(pids.size).to eq(2), server.log
    track_workers(server)
    response = http_get(server.port, "/stop")
    expect(response.code).to eq("200")
    stopped = response.body.to_i
    expect(pids).to include(stopped)
    expect(eventually(15) { !alive?(stopped) }).to be(true), "worker #{stopped} is still running"
    survivor = (pids.to_a - [stopped]).first
    replacement = eventually(10) { (children(server.pid) - [survivor]).first }
    expect(replacement).not_to be_nil, server.log
    track_workers(server)
    expect(answering_pids(server.port, including: [survivor, replacement], seconds: 10).to_a.sort)
      .to eq([survivor, replacement].sort)
    expect(server.exited?).to be(false)
    expect(alive?(server.pid)).to be(true)
    lines = event_lines(events)
    expect(lifecycle_of(lines, stopped).map(&:first)).to eq(%w[after_fork enter_child on_start start_shutdown on_finish])
    expect(lifecycle_of(lines, server.pid).map(&:first)).not_to include("on_child_crush", "start_shutdown")
    replacement_events = eventually(5) do
      (list = lifecycle_of(event_lines(events), replacement).map(&:first)).include?("on_start") && list
    end
    expect(replacement_events).to eq(%w[after_fork enter_child on_start])
    expect(server.log).not_to include("Child worker (#{stopped}) crashed")
  end

  it "INT to the master with WebSocket clients on both workers: each gets on_shutdown's message and a " \
     "Close 1001, and every process exits (the master with 0)" do
    events = events_path
    server = start_cluster(events: events)
    clients = clients_on_every_worker(server.port, "/ws?sub=#{unique_id('int')}")
    workers = children(server.pid)
    track_workers(server)
    expect(clients.map(&:last).uniq.sort).to eq(workers)
    server.signal("INT")
    clients.each do |ws, pid|
      kind, message = ws.read_message(15)
      expect([kind, message]).to eq([:text, "bye:#{pid}"])
      frame = ws.read_close(15)
      expect(frame&.close_code).to eq(1001), "client on #{pid}: #{frame.inspect}"
      ws.close(1001)
      expect(ws.eof_within?(10)).to be(true)
    end
    status = server.wait(30)
    expect(status).not_to be_nil, "the master still runs 30 s after INT\n#{server.log}"
    expect(status.exitstatus).to eq(0), server.log
    expect(eventually(10) { workers.none? { |pid| alive?(pid) } }).to be(true)
    lines = event_lines(events)
    shutdowns = lines.select { |_, text| text == "on_shutdown" }.map(&:first)
    expect(shutdowns.sort).to eq(clients.map(&:last).sort)
    # Every worker finished its shutdown and exited 0 (else the master logs a crash).
    workers.each { |pid| expect(lifecycle_of(lines, pid).map(&:first).last(2)).to eq(%w[start_shutdown on_finish]) }
    expect(lifecycle_of(lines, server.pid).map(&:first)).not_to include("on_child_crush")
    expect(server.log).not_to match(/crashed|did not stop in time/)
  ensure
    clients&.each { |ws, _| ws.close_socket }
  end

  it "kill -9 of the master: its workers run on_parent_crush and exit on their own" do
    events = events_path
    server = start_cluster(events: events)
    expect(answering_pids(server.port, count: 2).size).to eq(2), server.log
    workers = children(server.pid)
    track_workers(server)
    expect(workers.size).to eq(2)
    Process.kill("KILL", server.pid)
    expect(server.wait(10)).not_to be_nil
    exited = eventually(15) { workers.none? { |pid| alive?(pid) } }
    expect(exited).to be(true), "workers still running 15 s after the master died: " \
                                "#{workers.select { |pid| alive?(pid) }}"
    crushed = event_lines(events).select { |_, text| text.start_with?("on_parent_crush ") }.map(&:first)
    expect(crushed.sort).to eq(workers)
  end

  it "fork protection: a Sequel SQLite database opened in the master is disconnected before each fork " \
     "and works in both workers" do
    Dir.mktmpdir("iodine-sequel") do |dir|
      port = ServerProcess.free_port
      server = ServerProcess.new(nil, port: port, env: { "PORT" => port.to_s, "DB_PATH" => File.join(dir, "db.sqlite3") },
                                      script: [app_path("cluster_sequel.rb")])
      (@servers ||= []) << server
      master = server.pid
      answers = {}
      deadline = now + 20
      while answers.size < 2 && now < deadline
        response = http_get(port, "/count")
        expect(response.code).to eq("200"), response.body
        pid, rest = response.body.split(" ", 2)
        answers[pid.to_i] = rest
      end
      track_workers(server)
      expect(answers.keys.sort).to eq(children(master)), server.log
      answers.each { |pid, rest| expect(rest).to eq("rows=3 pool=1"), "worker #{pid}" }

      log = server.log
      expect(log).to include("db #{master} master rows=3 pool=1")
      expect(log.scan(/^db #{master} enter_master pool=(\d+)$/).flatten).to eq(%w[0 0]), log
      answers.each_key do |pid|
        expect(log).to include("db #{pid} enter_child pool=0")
      end
      # A write in one worker is seen by the other.
      added_by = http_get(port, "/add").body.split.first.to_i
      other = (answers.keys - [added_by]).first
      seen = eventually(10) do
        response = http_get(port, "/count")
        response.body.start_with?("#{other} ") && response.body
      end
      expect(seen).to eq("#{other} rows=4 pool=1")
    end
  end
end
