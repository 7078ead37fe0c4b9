# frozen_string_literal: true

require "spec_helper"
require "set"
require "tmpdir"
require_relative "../support/process_tree"

# A cluster on a Unix socket (`-b PATH -w 2`): the master creates the socket file, the
# workers share it. Only the master removes it, when the cluster ends. Each worker used to
# remove it as it left, so a hot restart (USR1 replaces every worker) or a worker stopped on
# its own left the listening socket without a name: new clients got ENOENT.
RSpec.describe "the Unix socket file of a cluster outlives its workers" do
  include ProcessTree

  around do |example|
    Dir.mktmpdir("iodine-unix") do |dir|
      @path = File.join(dir, "s.sock")
      @events = File.join(dir, "events")
      @app = File.join(dir, "pid.ru")
      File.write(@app, <<~RUBY)
        Iodine.on_state(:on_start) { File.write(#{@events.inspect}, "\#{Process.pid} on_start\\n", mode: "a") }
        run ->(_env) { [200, { "content-type" => "text/plain" }, ["pid \#{Process.pid}"]] }
      RUBY
      example.run
    end
  end

  after do
    @watcher&.kill
    if @server
      @seen.merge(children(@server.pid)) unless @server.exited?
      @server.stop("KILL")
    end
    kill_all(@seen.to_a)
  end

  before { @seen = Set.new }

  def serving
    serving_pids(@events)
  end

  # The master's two workers once both serve and none is in `old`; nil after `seconds`.
  def two_serving_workers(old, seconds = 15)
    wait_until(seconds) do
      pids = children(@server.pid)
      @seen.merge(pids)
      pids.size == 2 && (pids & old).empty? && pids.all? { |pid| serving.include?(pid) } && pids
    end
  end

  # GET / over the socket: [status line, body], or the error's class and message.
  def get_over_socket
    socket = UNIXSocket.new(@path)
    socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer, = read_for(socket, 5)
    [answer[/\A[^\r]*/], answer.split("\r\n\r\n", 2).last]
  rescue SystemCallError => e
    ["#{e.class}: #{e.message}", nil]
  ensure
    socket&.close
  end

  # GET / over the socket until every pid of `pids` answered (bounded); [answers, failures].
  def answers_from(pids, seconds = 10)
    seen = Set.new
    failures = []
    deadline = now + seconds
    until pids.to_set.subset?(seen) || now > deadline
      status, body = get_over_socket
      if status == "HTTP/1.1 200 OK"
        seen << body[/\Apid (\d+)\z/, 1].to_i
      else
        failures << status
        sleep 0.05
      end
    end
    [seen, failures.uniq]
  end

  it "-w 2: after a USR1 (every worker replaced) and a worker stopped on its own, new clients still connect " \
     "through the path; the file is gone once the cluster stopped" do
    @server = ServerProcess.new(["-w", "2", "-t", "1", "-b", @path, @app], bind: false, wait_for: nil)
    first = two_serving_workers([], 20)
    expect(first).to be_truthy, "the workers never served:\n#{@server.log}"
    expect(answers_from(first)).to eq([first.to_set, []])

    # Watches the file through the restart: every moment it was missing is noted.
    missing = []
    @watcher = Thread.new do
      loop do
        missing << now unless File.socket?(@path)
        sleep 0.01
      end
    end
    @server.signal("USR1")
    second = two_serving_workers(first)
    expect(second).to be_truthy, "the hot restart did not replace both workers:\n#{@server.log}"
    expect(File.socket?(@path)).to be(true), "the hot restart removed the socket file"
    expect(answers_from(second)).to eq([second.to_set, []])

    # A worker that stops on its own (TERM to it): the master replaces it; the file stays.
    leaving, staying = second
    Process.kill("TERM", leaving)
    third = two_serving_workers([leaving])
    expect(third).to be_truthy, "worker #{leaving} was not replaced:\n#{@server.log}"
    expect(third).to include(staying)
    expect(File.socket?(@path)).to be(true), "a worker leaving removed the socket file"
    expect(answers_from(third)).to eq([third.to_set, []])
    @watcher.kill
    expect(missing).to eq([]), "the socket file was missing #{missing.size} times (every 10 ms)"

    expect(@server.stop("TERM")&.exitstatus).to eq(0)
    expect(File.exist?(@path)).to be(false), "the socket file outlived the cluster"
  end

  it "-w 1: the file is gone once the server stopped" do
    @server = ServerProcess.new(["-w", "1", "-t", "1", "-b", @path, @app], bind: false, wait_for: nil)
    expect(wait_until(20) { serving.include?(@server.pid) }).to be(true), @server.log
    expect(get_over_socket).to eq(["HTTP/1.1 200 OK", "pid #{@server.pid}"])
    expect(@server.stop("TERM")&.exitstatus).to eq(0)
    expect(File.exist?(@path)).to be(false), "the socket file outlived the server"
  end
end
