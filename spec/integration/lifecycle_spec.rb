# frozen_string_literal: true

require "spec_helper"

# The GVL bridge's promises: nothing hangs, exceptions don't escape, Ctrl-C works.
RSpec.describe "process lifecycle" do
  def script(code, port)
    ["-e", "require 'iodine'\nPORT = #{port}\n#{code}"]
  end

  it "Iodine.stop from inside a request stops the server and start returns Iodine" do
    port = ServerProcess.free_port
    code = <<~RUBY
      Iodine.listen(service: :http, port: PORT, address: "127.0.0.1") { |env| Iodine.stop; [200, {}, ["bye"]] }
      Iodine.threads = 2
      r = Iodine.start
      puts "start returned \#{r.inspect}, running? \#{Iodine.running?.inspect}"
    RUBY
    server = ServerProcess.new(nil, script: script(code, port), port: port)
    expect(http_get(port, "/").body).to eq("bye")
    expect(server.wait(15)&.exitstatus).to eq(0)
    expect(server.log).to include("start returned Iodine, running? false")
  end

  it "Ctrl-C before Iodine.start (a slow boot) interrupts the process" do
    server = ServerProcess.new(nil, script: ["-e", "require 'iodine'; $stderr.puts 'booting'; sleep 30"], wait_for: :none)
    Timeout.timeout(10) { sleep 0.05 until server.log.include?("booting") }
    server.signal("INT")
    status = server.wait(10)
    expect(status).not_to be_nil
    expect(status.success?).to be_falsey # killed by SIGINT (Interrupt)
  end

  it "exit from another thread while running ends the process" do
    port = ServerProcess.free_port
    code = <<~RUBY
      Iodine.listen(service: :http, port: PORT, address: "127.0.0.1") { |env| [200, {}, ["x"]] }
      Thread.new { sleep 0.5; Thread.main.raise(SystemExit.new(3)) }
      Iodine.start
    RUBY
    server = ServerProcess.new(nil, script: script(code, port), port: port)
    expect(server.wait(15)&.exitstatus).to eq(3)
  end

  it "Thread#kill on a worker thread doesn't hang and the others keep serving" do
    port = ServerProcess.free_port
    code = <<~RUBY
      Iodine.listen(service: :http, port: PORT, address: "127.0.0.1") { |env| [200, {}, [Thread.current.name.to_s]] }
      Iodine.threads = 2
      Thread.new do
        sleep 0.5
        victim = Thread.list.find { |t| t.name.to_s.start_with?("iodine-worker") }
        victim.kill
        $stderr.puts(victim.join(5) ? "killed" : "kill hung")
      end
      Iodine.start
    RUBY
    server = ServerProcess.new(nil, script: script(code, port), port: port)
    Timeout.timeout(10) { sleep 0.05 until server.log.include?("kill") }
    expect(server.log).to include("killed")
    5.times { expect(http_get(port, "/").code).to eq("200") }
    expect(server.stop&.exitstatus).to eq(0)
  end

  it "Iodine.listen while running attaches the new listener at once" do
    port = ServerProcess.free_port
    second = ServerProcess.free_port
    code = <<~RUBY
      Iodine.listen(service: :http, port: PORT, address: "127.0.0.1") do |env|
        Iodine.listen(service: :http, port: #{second}, address: "127.0.0.1") { |_| [200, {}, ["second"]] }
        [200, {}, ["first"]]
      end
      Iodine.start
    RUBY
    server = ServerProcess.new(nil, script: script(code, port), port: port)
    expect(http_get(port, "/").body).to eq("first")
    expect(http_get(second, "/").body).to eq("second")
  ensure
    server&.stop
  end

  it "serves correctly under GC.stress (every Ruby object the bridge holds is marked)" do
    port = ServerProcess.free_port
    code = <<~RUBY
      Iodine.listen(service: :http, port: PORT, address: "127.0.0.1") do |env|
        body = env["rack.input"].read
        [200, { "X-Path" => env["PATH_INFO"], "X-Query" => env["QUERY_STRING"] }, [body, "|", env["HTTP_X_A"].to_s]]
      end
      Iodine.threads = 2
      Thread.new { sleep 0.2; GC.stress = true }
      Iodine.start
    RUBY
    server = ServerProcess.new(nil, script: script(code, port), port: port)
    sleep 0.5
    5.times do |i|
      Net::HTTP.start("127.0.0.1", port, read_timeout: 60) do |http|
        req = Net::HTTP::Post.new("/p#{i}?q=#{i}", "X-A" => "a#{i}")
        req.body = "body#{i}" * 10
        res = http.request(req)
        expect(res.body).to eq("#{"body#{i}" * 10}|a#{i}")
        expect(res["X-Path"]).to eq("/p#{i}")
        expect(res["X-Query"]).to eq("q=#{i}")
      end
    end
  ensure
    server&.stop
  end

  it "raises the open-files soft limit to the hard limit, for many connections" do
    port = ServerProcess.free_port
    code = <<~RUBY
      Process.setrlimit(:NOFILE, 256, Process.getrlimit(:NOFILE)[1])
      Iodine.listen(service: :http, port: PORT, address: "127.0.0.1") { |_| [200, {}, [Process.getrlimit(:NOFILE).join(",")]] }
      Iodine.start
    RUBY
    server = ServerProcess.new(nil, script: script(code, port), port: port)
    soft, hard = http_get(port, "/").body.split(",").map(&:to_i)
    expect(soft).to eq(hard)
  ensure
    server&.stop
  end

  it "a request handled by a 2-thread pool isn't blocked by a slow request" do
    server = ServerProcess.new(["-t", "2", app_path("echo.ru")])
    slow = Thread.new { http_get(server.port, "/slow?2") }
    sleep 0.2
    started = Time.now
    expect(http_get(server.port, "/").body).to eq("Hello World!")
    expect(Time.now - started).to be < 1.5
    slow.join
  ensure
    server&.stop
  end
end
