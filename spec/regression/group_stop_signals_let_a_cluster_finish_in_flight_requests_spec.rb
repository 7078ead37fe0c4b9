# frozen_string_literal: true

require "spec_helper"
require "tmpdir"
require_relative "../support/process_tree"

# One Ctrl-C in a terminal signals INT to the whole process group; systemd's stop sends TERM
# to every process of the control group at once. Either way each worker gets the signal twice
# within moments (from outside, and from its master telling it to stop): that is one stop,
# and the requests in flight finish. Workers used to take the master's TERM as a second
# signal and exit at once (status 2), cutting every in-flight request. The same for a hot
# restart followed by a stop: the retiring worker, already told to leave, is not told again.
RSpec.describe "stop signals to a whole cluster (-w 2 -t 4) with six requests in flight" do
  include ProcessTree

  SLOW_REQUEST_SECONDS = 2.5
  IN_FLIGHT = 6

  around do |example|
    Dir.mktmpdir("iodine-group-stop") do |dir|
      @events = File.join(dir, "events")
      @app = File.join(dir, "slow.ru")
      File.write(@app, <<~RUBY)
        EVENTS = #{@events.inspect}
        def note(line) = File.write(EVENTS, "\#{Process.pid} \#{line}\\n", mode: "a")
        Iodine.on_state(:on_start) { note("on_start") }
        run(lambda do |env|
          if env["PATH_INFO"] == "/slow"
            note("start")
            sleep #{SLOW_REQUEST_SECONDS}
            return [200, { "content-type" => "text/plain" }, ["done \#{Process.pid}"]]
          end
          [200, { "content-type" => "text/plain" }, ["ok \#{Process.pid}"]]
        end)
      RUBY
      example.run
    end
  end

  after do
    @clients&.each(&:kill)
    if @server
      @seen = (@seen || []) | children(@server.pid) unless @server.exited?
      kill_group(@server.pid)
      @server.stop("KILL")
    end
    kill_all(@seen || [])
  end

  def lines(event)
    return [] unless File.exist?(@events)

    File.readlines(@events, chomp: true).filter_map { |line| line[/\A(\d+) #{event}\z/, 1]&.to_i }
  end

  # The cluster in a process group of its own (pgid: the master's pid), both workers serving.
  def start_cluster
    @server = group_server(["-w", "2", "-t", "4", @app])
    workers = wait_until(20) { (pids = lines("on_start").uniq).size == 2 && pids.sort }
    expect(workers).to be_truthy, "the workers never served:\n#{@server.log}"
    expect(Process.getpgid(@server.pid)).to eq(@server.pid)
    expect(workers.map { |pid| Process.getpgid(pid) }.uniq).to eq([@server.pid])
    @seen = workers
  end

  # Sends IN_FLIGHT GET /slow, each on its own connection (read to the end, bounded), and
  # waits until the app runs them all; the threads (their values: the whole answers).
  def requests_in_flight
    @clients = Array.new(IN_FLIGHT) do
      Thread.new do
        socket = TCPSocket.new("127.0.0.1", @server.port)
        socket.write("GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        read_for(socket, 25).first
      rescue StandardError => e
        "#{e.class}: #{e.message}"
      ensure
        socket&.close
      end
    end
    # -t 4 per worker: should the kernel give one worker five or six of them, the last ones
    # start as the first ones end.
    started = wait_until(SLOW_REQUEST_SECONDS + 5) { lines("start").size >= IN_FLIGHT }
    expect(started).to be(true), "only #{lines('start').size} requests reached the app:\n#{@server.log}"
    warn "in flight per worker: #{lines('start').tally}" if ENV["SHOW_RESULTS"]
    @clients
  end

  # Every request got its whole 200 answer; the master exited 0 in time.
  def expect_all_answered_and_clean_exit
    answers = @clients.map { |t| t.join(25) ? t.value : "still waiting" }
    cut = answers.reject { |a| a.match?(/\AHTTP\/1\.1 200 .*\r\n\r\ndone \d+\z/m) }
    expect(cut).to eq([]), "#{cut.size} of #{IN_FLIGHT} in-flight requests cut: #{cut.map { |a| a[0, 60] }}\n#{@server.log}"
    status = @server.wait(20)
    expect(status).not_to be_nil, "the master still runs:\n#{@server.log}"
    expect(status.exitstatus).to eq(0), @server.log
    expect(@server.log).not_to match(/second SIG|did not stop in time|crashed/)
  end

  %w[INT TERM].each do |sig|
    it "#{sig} to the whole process group (#{sig == 'INT' ? "a terminal's Ctrl-C" : "systemd's stop"}): " \
       "all #{IN_FLIGHT} get their 200, the master exits 0" do
      start_cluster
      requests_in_flight
      Process.kill(sig, -@server.pid)
      expect_all_answered_and_clean_exit
    end
  end

  it "USR1, then TERM to the master while the retiring worker still serves: all #{IN_FLIGHT} get their 200, " \
     "the master exits 0" do
    workers = start_cluster
    requests_in_flight
    @server.signal("USR1")
    # The hot restart began: a new worker forked, the first old one told to leave.
    began = wait_until(5) do
      kids = children(@server.pid)
      @seen |= kids
      (kids - workers).any? && @server.log.include?("Hot restart")
    end
    expect(began).to be(true), @server.log
    @server.signal("TERM")
    expect_all_answered_and_clean_exit
  end
end
